"""A live hostile campaign against a running local subnet: simnet, one validator and two honest
miners (the main job's processes, started with its building blocks), plus a hostile miner (a
registered hotkey whose axon is a crafted raw HTTP server, `bench/hostile_miner.py`) and a
permit-holding attacker (a second staked validator hotkey that runs no validator and only signs
hostile requests to the honest miners, `bench/permit_attacker.py`). It measures, per round, whether
the round settled within its window and whether the honest miners were accepted, the validator's
resident memory from its first round to its last, 5xx answers seen by the attacker, neuron
crashes, and what became of every attack.

    python -m bench.hostile_campaign --rounds 20 --out runs/hostile
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from loguru import logger

from bench.hostile_miner import HostileMiner
from bench.permit_attacker import SECRET, AttackerAxon, PermitAttacker
from scripts import run_local_subnet as runner
from template.chain import bootstrap
from template.chain.client import start_simnet_process, wait_until_ready
from template.chain.neuron_chain import NeuronChain
from template.chain.round_clock import round_at
from template.training.workload import Workload
from template.utils.ports import free_port
from template.validator.miner_client import MinerEndpoint

REPO = Path(__file__).resolve().parents[1]
ALL_ITEMS = frozenset({1, 3, 4, 5, 6, 7})
HOSTILE_MINER_ITEMS, ATTACKER_ITEMS = frozenset({1, 4, 5}), frozenset({3, 6, 7})
RSS_BAR = 0.20  # the validator's resident memory must end within 20% of where it started


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=20, help="validator rounds to run under attack")
    p.add_argument("--out", default="", help="run directory: chain, wallets, state, logs (default: runs/hostile-<time>)")
    p.add_argument("--results", default=str(REPO / "bench" / "results" / "hostile_campaign.json"),
                   help="where the figures go as JSON (also written to the run directory)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--block-time", type=float, default=0.25)
    main_job = runner.parse_args([])  # the main job's round settings unless given
    p.add_argument("--round-blocks", type=int, default=main_job.round_blocks)
    p.add_argument("--train-blocks", type=int, default=main_job.train_blocks)
    p.add_argument("--inner-steps", type=int, default=main_job.inner_steps, help="0: the preset's")
    p.add_argument("--pages-per-miner", type=int, default=main_job.pages_per_miner, help="0: the preset's")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "deai"))
    p.add_argument("--items", default="1,3,4,5,6,7",
                   help="the attacks to make, by item (1, 4, 5: the hostile miner; 3, 6, 7: the attacker); "
                        "'none' runs the same subnet without either, for what the machine alone costs")
    args = p.parse_args(argv)
    args.items = frozenset() if args.items == "none" else frozenset(int(i) for i in args.items.split(","))
    if not args.items <= ALL_ITEMS:
        p.error(f"--items are among {sorted(ALL_ITEMS)}")
    return args


def runner_args(args: argparse.Namespace) -> argparse.Namespace:
    """The main job's settings for the same run (its neuron commands and chain setup read them)."""
    return runner.parse_args(["--rounds", str(args.rounds), "--preset", args.preset, "--block-time",
                              str(args.block_time), "--round-blocks", str(args.round_blocks), "--train-blocks",
                              str(args.train_blocks), "--inner-steps", str(args.inner_steps),
                              "--pages-per-miner", str(args.pages_per_miner), "--wandb.off",
                              "--cache-dir", args.cache_dir])


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


async def chain_block(http: httpx.AsyncClient, sim_url: str) -> int | None:
    try:
        return int((await http.get(f"{sim_url}/health", timeout=2.0)).json()["block"])
    except (httpx.HTTPError, ValueError, KeyError):
        return None


async def wait_for_miners(miners: list[runner.Neuron], timeout: float = 180.0) -> None:
    """Until every honest miner answers /v1/info (it has loaded its workload and serves)."""
    give_up = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as http:
        for miner in miners:
            while True:
                try:
                    if (await http.get(f"http://127.0.0.1:{miner.port}/v1/info")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > give_up or miner.process.poll() is not None:
                    raise RuntimeError(f"{miner.name} did not come up; see its log")
                await asyncio.sleep(0.5)


async def observe(args, validator: runner.Neuron, miners: list[runner.Neuron], sim_url: str) -> dict:
    """Follow the validator until it exits after its rounds: when each round's record appears (the
    chain's block then: the round is settled), its resident memory, and any neuron that exits on
    its own."""
    seen: dict[int, dict] = {}
    rss: list[tuple[float, float]] = []
    crashes: dict[str, int] = {}
    started = time.monotonic()
    give_up = started + 120 + (args.rounds + 2) * args.round_blocks * args.block_time * 3
    async with httpx.AsyncClient() as http:
        while time.monotonic() < give_up:
            memory = rss_mb(validator.process.pid)
            if memory is not None:
                rss.append((round(time.monotonic() - started, 1), memory))
            for record in runner.read_jsonl(validator.state_dir / "rounds.jsonl"):
                if record["round_index"] not in seen:
                    seen[record["round_index"]] = {"settled_block": await chain_block(http, sim_url),
                                                   "rss_mb": memory, "load_1m": round(os.getloadavg()[0], 2)}
            for neuron in miners:
                if neuron.process.poll() is not None and neuron.name not in crashes:
                    crashes[neuron.name] = neuron.process.returncode
            if validator.process.poll() is not None:
                if validator.process.returncode != 0 or len(seen) < args.rounds:
                    crashes[validator.name] = validator.process.returncode
                break
            await asyncio.sleep(0.1)
        else:
            logger.error("the validator did not finish its rounds in time")
    return {"seen": seen, "rss": rss, "crashes": crashes, "seconds": round(time.monotonic() - started, 1)}


def round_table(args, validator: runner.Neuron, seen: dict, honest: dict[str, str], hostile_hotkey: str
                ) -> list[dict]:
    scores = {s["round"]: s["reports"] for s in runner.read_jsonl(validator.state_dir / "scores.jsonl")}
    rows = []
    for record in runner.read_jsonl(validator.state_dir / "rounds.jsonl"):
        index = record["round_index"]
        window = round_at(record["start_block"], args.round_blocks, args.train_blocks)
        settle_by = window.end_block + args.round_blocks  # rounds overlap: scored while the next one trains
        reports = scores.get(index, {})
        settled = seen.get(index, {}).get("settled_block")
        hostile = reports.get(hostile_hotkey)
        rows.append({
            "round": index, "end_block": settle_by, "settled_block": settled,
            "within_window": settled is not None and settled < settle_by,
            "honest_accepted": {name: bool(reports.get(hk, {}).get("accepted")) for name, hk in honest.items()},
            "honest_refused_why": {name: reports.get(hk, {}).get("reason", "no report")[:160]
                                   for name, hk in honest.items() if not reports.get(hk, {}).get("accepted")},
            "merged": len(record["accepted"]),
            "machine_load_1m": seen.get(index, {}).get("load_1m"),
            "hostile": None if hostile is None else {"accepted": hostile["accepted"], "reason": hostile["reason"][:200]},
            "heldout_loss": record["heldout_loss_after"],
        })
    return rows


def hostile_summary(hostile: HostileMiner, rows: list[dict]) -> dict[str, list[dict]]:
    """Items 1, 4, 5 as the hostile miner saw them, with the validator's verdict on its round."""
    verdicts = {r["round"]: r for r in rows}
    items: dict[str, list[dict]] = {"1": [], "4": [], "5": list(hostile.info_events)}
    for index, hostile_round in sorted(hostile.rounds.items()):
        row = verdicts.get(index)
        attack = hostile_round.attack
        verdict = row["hostile"] if row else None
        items[str(attack.item)].append({
            "round": index, "attack": attack.name, "class": attack.payload_class or None,
            "events": hostile_round.events,
            "validator_verdict": verdict,
            "round_within_window": row["within_window"] if row else None,
            "refused": verdict is not None and not verdict["accepted"],
        })
    return items


# What the attacker's axon sends, and what a miner's failed fetch of it would say: none of it may
# come back in a miner's answer.
LEAK_MARKERS = [SECRET.decode().strip(), "hunter2", "Errno", "ConnectError", "RemoteProtocolError", "ReadError",
                "exceeds the limit", "no complete answer within", "10485760", "9663676416"]


def tally(answers) -> dict[str, dict]:
    by_attack: dict[str, dict] = {}
    for a in answers:
        entry = by_attack.setdefault(a.attack, {"tried": 0, "statuses": Counter(), "examples": {}})
        entry["tried"] += 1
        entry["statuses"][str(a.status)] += 1
        entry["examples"].setdefault(str(a.status), a.detail[:160])
    for entry in by_attack.values():
        entry["statuses"] = dict(entry["statuses"])
    return by_attack


def attacker_summary(attacker: PermitAttacker, rows: list[dict], round_blocks: int, train_blocks: int) -> dict:
    """Items 3, 6, 7 as the attacker saw them, with the honest miners' verdicts in those rounds."""
    verdicts = {r["round"]: r for r in rows}
    answers = attacker.answers
    forged = [a for a in answers if a.item == 3]
    item3 = {"attacks": tally(forged), "refused_400_409": sum(a.status in (400, 409) for a in forged),
             "refused_other_4xx": sum(a.status is not None and 400 <= a.status < 500 and a.status not in (400, 409)
                                      for a in forged),
             "accepted": sum(a.status == 202 for a in forged),
             "rounds_honest_accepted": sum(all(verdicts[r]["honest_accepted"].values())
                                           for r in {a.round_index for a in forged} if r in verdicts),
             "rounds": len({a.round_index for a in forged if a.round_index in verdicts})}

    def eval_block(index: int) -> int:
        return round_at(index * round_blocks, round_blocks, train_blocks).eval_block

    early = [a for a in answers if a.attack == "contribution before the reveal" and a.block_before < eval_block(
        a.round_index)]
    after_commit = [a for a in early if a.status == 425]
    item6 = {"attacks": tally(a for a in answers if a.item == 6),
             "early_requests": len(early),
             "early_statuses": dict(Counter(str(a.status) for a in early)),
             "early_bytes_given": sum(a.status == 200 and a.block_after < eval_block(a.round_index) for a in early),
             "raced_the_reveal": sum(a.status == 200 and a.block_after >= eval_block(a.round_index) for a in early),
             "refused_425_after_commitment": len(after_commit),
             "refused": sum(a.status is not None and a.status != 200 for a in early)}
    orders = [a for a in answers if a.item == 7]
    taken = [a for a in orders if a.status == 202 and '"accepted"' in a.detail]
    taken_rounds = sorted({a.round_index for a in taken})
    item7 = {"attacks": tally(orders), "orders_taken": len(taken), "rounds_with_an_order_taken": taken_rounds,
             "honest_accepted_in_those_rounds": {str(r): verdicts[r]["honest_accepted"] for r in taken_rounds
                                                 if r in verdicts},
             "attacker_axon_connections": attacker.axon.connections,
             # only a miner's answer can leak; the attacker's own transport errors name such things too
             "leaks": [{"round": a.round_index, "attack": a.attack, "status": a.status, "detail": a.detail[:200]}
                       for a in answers if a.status is not None and any(m in a.detail for m in LEAK_MARKERS)]}
    return {"3": item3, "6": item6, "7": item7}


async def publish_axon(sim_url: str, wallet, netuid: int, port: int) -> None:
    """Serve an axon for a hotkey that runs no neuron, the way the neurons do."""
    chain = await NeuronChain("sim", sim_url, wallet, netuid).connect()
    try:
        await chain.serve_axon("127.0.0.1", port)
    finally:
        await chain.close()


async def campaign(args, workdir: Path) -> dict:
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    settings = runner_args(args)
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = start_simnet_process(workdir / "simnet.sqlite", sim_port, args.block_time, log_path=logs / "simnet.log")
    wallets = workdir / "wallets"
    cast = [("validator", "validator", "validator"), ("miner0-honest", "miner", "honest"),
            ("miner1-honest", "miner", "honest")]
    if args.items & ATTACKER_ITEMS:
        cast[1:1] = [("attacker", "validator", "attacker")]
    if args.items & HOSTILE_MINER_ITEMS:
        cast.append(("miner2-hostile", "miner", "hostile"))
    neurons = [runner.Neuron(name, role, behaviour, bootstrap.create_wallet(wallets, name), free_port(),
                             workdir / name) for name, role, behaviour in cast]
    validator = neurons[0]
    miners = [n for n in neurons if n.behaviour == "honest"]
    attacker_neuron = next((n for n in neurons if n.behaviour == "attacker"), None)
    hostile_neuron = next((n for n in neurons if n.behaviour == "hostile"), None)
    hostile = attacker = attacker_chain = attacking = None
    axon = AttackerAxon()
    stop = asyncio.Event()
    try:
        await asyncio.to_thread(wait_until_ready, sim_url, 60)
        workload = await asyncio.to_thread(Workload.build, args.preset, "shakespeare", Path(args.cache_dir).expanduser())
        netuid = await runner.setup_chain(settings, workdir, neurons, sim_url)  # the attacker gets half the stake
        if hostile_neuron is not None:
            hostile = HostileMiner(hostile_neuron.wallet.hotkey, netuid, args.preset, args.items).start()
            await publish_axon(sim_url, hostile_neuron.wallet, netuid, hostile.port)
        if attacker_neuron is not None:
            axon.server.start()
            await publish_axon(sim_url, attacker_neuron.wallet, netuid, axon.port)
        for neuron in (validator, *miners):
            runner.start(neuron, runner.neuron_command(neuron, settings, netuid, sim_url, workdir, None), logs)
        logger.info("subnet {}: {}", netuid, ", ".join(f"{n.name} uid {n.uid}" for n in neurons))
        launch_rss = rss_mb(validator.process.pid)
        await wait_for_miners(miners)
        if attacker_neuron is not None:
            attacker_chain = await NeuronChain("sim", sim_url, attacker_neuron.wallet, netuid).connect()
            attacker = PermitAttacker(attacker_neuron.wallet.hotkey, netuid,
                                      [MinerEndpoint(m.uid, m.wallet.hotkey.ss58_address, f"http://127.0.0.1:{m.port}")
                                       for m in miners], workload, args.round_blocks, args.train_blocks,
                                      args.block_time, sim_url, attacker_chain.block_hash, axon, args.items)
            first = (await attacker.block()) // args.round_blocks
            attacking = asyncio.create_task(attacker.run(first, stop))
        observed = await observe(args, validator, miners, sim_url)
    finally:
        stop.set()
        if attacking is not None:
            attacking.cancel()
            await asyncio.gather(attacking, return_exceptions=True)
        if attacker is not None:
            await attacker.close()
        if attacker_chain is not None:
            await attacker_chain.close()
        for neuron in neurons:
            runner.stop(neuron.process)
        runner.stop(sim)
        if hostile is not None:
            hostile.stop()
        axon.server.stop()

    honest = {m.name: m.wallet.hotkey.ss58_address for m in miners}
    rows = round_table(args, validator, observed["seen"], honest,
                       hostile_neuron.wallet.hotkey.ss58_address if hostile_neuron else "")
    seen = observed["seen"]
    # The bar's start: after the first round that merged updates (the validator has then done every
    # kind of work once); a round with nothing to score leaves it lower.
    settled_rss = [(r, seen[r["round"]]["rss_mb"]) for r in rows if seen.get(r["round"], {}).get("rss_mb")]
    rss_first = settled_rss[0][1] if settled_rss else None
    rss_start = next((m for r, m in settled_rss if r["merged"]), rss_first)
    rss_end = settled_rss[-1][1] if settled_rss else None
    indices = [r["round"] for r in rows]
    answers = attacker.answers if attacker else []
    items = {**(hostile_summary(hostile, rows) if hostile else {}),
             **(attacker_summary(attacker, rows, args.round_blocks, args.train_blocks) if attacker else {})}
    return {
        "settings": {"rounds": args.rounds, "preset": args.preset, "block_time": args.block_time,
                     "round_blocks": args.round_blocks, "train_blocks": args.train_blocks,
                     "items": sorted(args.items)},
        "bar": {
            "rounds_settled": len(rows),
            "rounds_skipped": sorted(set(range(min(indices), max(indices) + 1)) - set(indices)) if indices else [],
            "every_round_within_window": bool(rows) and all(r["within_window"] for r in rows),
            "rounds_within_window": sum(r["within_window"] for r in rows),
            "honest_accepted_every_round": bool(rows) and all(all(r["honest_accepted"].values()) for r in rows),
            "rounds_all_honest_accepted": sum(all(r["honest_accepted"].values()) for r in rows),
            "validator_rss_mb": {"at_launch": launch_rss, "after_first_round": rss_first,
                                 "after_first_merging_round": rss_start, "after_last_round": rss_end,
                                 "max": max((m for _, m in observed["rss"]), default=None),
                                 "growth": round(rss_end / rss_start - 1, 4) if rss_start and rss_end else None},
            "validator_rss_within_20_percent": bool(rss_start and rss_end and abs(rss_end / rss_start - 1) <= RSS_BAR),
            "answers_5xx_seen_by_attacker": sum(a.status is not None and a.status >= 500 for a in answers),
            "attacker_requests": len(answers),
            "attacker_requests_unanswered": sum(a.status is None for a in answers),
            "neuron_crashes": observed["crashes"],
        },
        "rounds": rows,
        "items": items,
        "rss_samples": observed["rss"][::20],
        "seconds": observed["seconds"],
        "run_dir": str(workdir),
    }


def print_summary(results: dict) -> None:
    bar, items = results["bar"], results["items"]
    print(f"\nhostile campaign: {bar['rounds_settled']} rounds settled, skipped {bar['rounds_skipped'] or 'none'}")
    print(f"{'round':>5} {'settled':>8} {'end':>6} {'in window':>9} {'load':>5}  honest accepted   hostile verdict")
    for r in results["rounds"]:
        honest = " ".join("yes" if ok else "NO" for ok in r["honest_accepted"].values())
        hostile = "-" if r["hostile"] is None else ("ACCEPTED" if r["hostile"]["accepted"] else r["hostile"]["reason"][:60])
        print(f"{r['round']:>5} {str(r['settled_block']):>8} {r['end_block']:>6} {str(r['within_window']):>9} "
              f"{str(r['machine_load_1m']):>5}  {honest:<16}  {hostile}")
    rss = bar["validator_rss_mb"]
    print(f"every round within its window: {bar['every_round_within_window']}; honest accepted every round: "
          f"{bar['honest_accepted_every_round']}")
    print(f"validator RSS: {rss['after_first_merging_round']} MiB after the first round that merged updates "
          f"({rss['after_first_round']} after the first round) -> {rss['after_last_round']} MiB after the last "
          f"(growth {rss['growth']}, max {rss['max']}); within 20%: {bar['validator_rss_within_20_percent']}")
    print(f"5xx answers seen by the attacker: {bar['answers_5xx_seen_by_attacker']} of {bar['attacker_requests']} "
          f"requests ({bar['attacker_requests_unanswered']} unanswered); neuron crashes: {bar['neuron_crashes'] or 0}")
    for item in ("1", "4", "5"):
        if item in items:
            tried = [e for e in items[item] if "round" in e]
            print(f"item {item}: {len(tried)} hostile rounds, refused {sum(e['refused'] for e in tried)}"
                  + (f"; {len(items[item]) - len(tried)} /v1/info floods" if item == "5" else ""))
    if items.get("3", {}).get("attacks"):
        print(f"item 3: {sum(a['tried'] for a in items['3']['attacks'].values())} forged orders, "
              f"{items['3']['refused_400_409']} refused 400/409, {items['3']['refused_other_4xx']} other 4xx, "
              f"{items['3']['accepted']} accepted; honest accepted "
              f"in {items['3']['rounds_honest_accepted']}/{items['3']['rounds']} of those rounds")
    if items.get("6", {}).get("attacks"):
        print(f"item 6: {items['6']['early_requests']} contribution requests before the eval block "
              f"{items['6']['early_statuses']}, bytes given early: {items['6']['early_bytes_given']}")
    if items.get("7", {}).get("attacks"):
        print(f"item 7: {sum(a['tried'] for a in items['7']['attacks'].values())} orders at hostile checkpoint "
              f"URLs { {k: v['statuses'] for k, v in items['7']['attacks'].items()} }, taken "
              f"{items['7']['orders_taken']} (rounds {items['7']['rounds_with_an_order_taken']}), "
              f"leaks {len(items['7']['leaks'])}")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    workdir = Path(args.out or REPO / "runs" / time.strftime("hostile-%Y%m%d-%H%M%S")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.add(sys.stderr, level="INFO", format="<green>{time:HH:mm:ss}</green> campaign {message}")
    logger.add(workdir / "campaign.log", level="DEBUG")
    results = asyncio.run(campaign(args, workdir))
    text = json.dumps(results, indent=1, default=str)
    (workdir / "hostile_campaign.json").write_text(text)
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(text)
    print_summary(results)
    return results


if __name__ == "__main__":
    main()
