"""The main job: a local subnet on the embedded simulated chain, with real training.

Starts simnet, creates wallets, creates and starts the subnet, registers and stakes one
validator, registers five miners (three honest, one that sends all-zero updates, one that
copies another miner's update), runs each as its own process for N rounds, then prints and
writes what happened: per-miner scores, incentive and emission read back from the chain, and
the global model's held-out loss per round.

    python scripts/run_local_subnet.py --out runs/demo            # defaults: 8 rounds, tiny preset
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from loguru import logger  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402

from scripts.commitment_watch import CommitmentWatch  # noqa: E402
from scripts.crash_chaos import TRUNCATIONS, Crasher, Victim, plan_kills  # noqa: E402
from scripts.local_summary import MinerRow, miner_figures, render_summary, write_outputs  # noqa: E402
from template.training.pretrained import PretrainedSource  # noqa: E402
from template.training.workload import Workload  # noqa: E402
from template.chain import bootstrap  # noqa: E402
from template.utils.ports import free_port  # noqa: E402
from template.chain.client import open_client, start_simnet_process, wait_until_ready  # noqa: E402

BEHAVIOURS = ["honest", "honest", "honest", "zero", "copy"]
SMALL_MINER_GB = 0.51  # below what the tiny preset's full-model training needs: gets width shards
TEAM_MINER = "miner0-honest"  # the miner --team-size runs under torchrun
LAST_CHECK_SECONDS = 60.0  # how long followers may take over their last round once the lead has stopped


@dataclass
class Neuron:
    name: str
    role: str
    behaviour: str
    wallet: object
    port: int
    state_dir: Path
    process: subprocess.Popen | None = None
    uid: int = -1
    flags: list[str] = field(default_factory=list)  # extra command-line flags ("{workdir}" is the run's dir)


# The main job's recipe on the tiny preset: more steps than 24-s rounds fit on a 2-core machine
# (its miners train about 65-96 of them, until the deadline, and then go straight on to the
# next round's order, which came while they trained), over pages enough for that to stay about
# six passes. With the preset's H=30 over 96 pages they reached H in about 9 s of an 18-s round
# and trained 48% of their time; without a cap on passes, training until the deadline over 96
# pages made up to 23 passes and the held-out loss rose again from round 4.
MAIN_JOB_TINY_RECIPE = (96, 256)  # inner steps at most, pages per miner


@dataclass(frozen=True)
class MinerPlan:
    """A miner other runners ask for (bench/adversarial.py): its behaviour, extra flags
    ("{workdir}" stands for the run's directory) and, for hotkeys of one operator, the shared
    coldkey's wallet name."""

    name: str
    behaviour: str
    flags: tuple[str, ...] = ()
    coldkey: str = ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="", help="write summary.json, plots and logs here (default: runs/<time>)")
    p.add_argument("--rounds", type=int, default=8, help="training rounds to run")
    p.add_argument("--preset", default="tiny", help="model preset (with --model: the recipe and page length)")
    p.add_argument("--model", default="", help="fine-tune this pretrained model (hub id or save_pretrained folder: "
                                               "--model.name_or_path of every neuron) instead of the preset's")
    p.add_argument("--team-size", type=int, default=0,
                   help="run the first honest miner under torchrun with this many processes (one hotkey)")
    p.add_argument("--block-time", type=float, default=0.25, help="simnet seconds per block")
    p.add_argument("--round-blocks", type=int, default=96, help="blocks per round")
    p.add_argument("--train-blocks", type=int, default=0,
                   help="blocks from round start to the miners' deadline (default: all but one with overlapped "
                        "rounds, where a round is scored while the next trains; two thirds with --no-overlap, "
                        "which leaves the scoring the rest)")
    p.add_argument("--inner-steps", type=int, default=0,
                   help="most inner steps per round (miners train until the deadline, at most this; 0: the "
                        "preset's, or with neither this nor --pages-per-miner given on the tiny preset, the main "
                        f"job's {MAIN_JOB_TINY_RECIPE[0]})")
    p.add_argument("--pages-per-miner", type=int, default=0,
                   help=f"pages per miner per round (0: the preset's, or the main job's {MAIN_JOB_TINY_RECIPE[1]} "
                        "as for --inner-steps)")
    p.add_argument("--no-overlap", dest="overlap", action="store_false",
                   help="settle each round before the next starts (miners wait while validators score)")
    p.add_argument("--tempo", type=int, default=10, help="subnet tempo in blocks")
    p.add_argument("--validators", type=int, default=1,
                   help="validators to run; the first (most stake) leads, the others score and set weights too")
    p.add_argument("--small-miners", type=int, default=0,
                   help="extra honest miners declaring too little memory for the model: they train width shards")
    p.add_argument("--kill-miner", default="", help="chaos: NAME@ROUND kills that miner after that round")
    p.add_argument("--kill-lead", type=int, default=0,
                   help="chaos: kill the lead validator after that many rounds (needs --validators 2 or more); "
                        "the next validator by stake must take over, and the summary is read from it")
    p.add_argument("--revive-lead", type=int, default=0,
                   help="chaos, with --kill-lead: restart the killed lead once its successor has done that many "
                        "rounds; it must follow until it holds the freshest checkpoint, then lead again")
    p.add_argument("--crash-lead", type=int, default=0,
                   help="chaos: kill -9 the lead validator at that many seeded moments of the run (while miners "
                        "train, while it scores, after a checkpoint write, right after a record is appended) and "
                        "start it again at once with its state dir; kills are logged to OUT/chaos.jsonl")
    p.add_argument("--crash-miner", action="append", default=[], metavar="NAME:N",
                   help="chaos: the same for a miner (while it trains, after its AdamW moments are saved, after its "
                        "contribution lands in its outbox); repeatable")
    p.add_argument("--chaos-seed", type=int, default=0, help="seed of the --crash-* moments")
    p.add_argument("--crash-truncate", default="", metavar="KIND,...",
                   help="chaos, with --crash-*: a kill also damages a file of its victim before the restart, as a "
                        "crash mid-write leaves it, one kind per kill in this order: record_tail, state, checkpoint "
                        "(the lead), moments, residual (a miner)")
    p.add_argument("--wandb.off", dest="wandb_off", action="store_true", help="no wandb runs")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "deai"), help="corpus/tokenizer cache")
    args = p.parse_args(argv)
    if not args.train_blocks:
        args.train_blocks = args.round_blocks - 1 if args.overlap else args.round_blocks * 2 // 3
    if args.preset == "tiny" and not args.model and not args.inner_steps and not args.pages_per_miner:
        args.inner_steps, args.pages_per_miner = MAIN_JOB_TINY_RECIPE
    if args.kill_lead and args.validators < 2:
        p.error("--kill-lead needs --validators 2 or more (someone must take over)")
    if args.revive_lead and not args.kill_lead:
        p.error("--revive-lead needs --kill-lead")
    if args.crash_lead and args.kill_lead:
        p.error("--crash-lead and --kill-lead both kill the lead: use one")
    try:
        args.crash_miners = {name: int(count) for name, _, count in (c.rpartition(":") for c in args.crash_miner)}
    except ValueError:
        p.error("--crash-miner takes NAME:N, e.g. miner0-honest:2")
    unknown = sorted(set(k for k in args.crash_truncate.split(",") if k) - set(TRUNCATIONS))
    if unknown:
        p.error(f"--crash-truncate: unknown kind {', '.join(unknown)} (known: {', '.join(TRUNCATIONS)})")
    for name, count in {"validator": args.crash_lead, **args.crash_miners}.items():
        if count > args.rounds - 1:
            p.error(f"{count} kills of {name} do not fit in {args.rounds} rounds (at most {args.rounds - 1})")
    return args


async def setup_chain(args, workdir: Path, neurons: list[Neuron], sim_url: str) -> int:
    wallets = workdir / "wallets"
    alice = bootstrap.DevWallet.from_uri("//Alice")
    owner = bootstrap.create_wallet(wallets, "owner")
    client = await open_client("sim", sim_url).connect()
    try:
        await bootstrap.fund(client, alice, owner.coldkeypub.ss58_address, 5_000)
        for neuron in neurons:
            await bootstrap.fund(client, alice, neuron.wallet.coldkeypub.ss58_address, 1_000)
        netuid = await bootstrap.create_subnet(client, owner)
        await bootstrap.configure_local_subnet(client, netuid, owner, alice,
                                               weights_rate_limit=max(1, args.round_blocks // 2), tempo=args.tempo)
        for neuron in neurons:
            neuron.uid = await bootstrap.register(client, neuron.wallet, netuid)
            logger.info("registered {} as uid {}", neuron.name, neuron.uid)
        validators = [n for n in neurons if n.role == "validator"]
        for rank, validator in enumerate(validators):  # the first has the most stake: the lead
            await bootstrap.add_stake(client, validator.wallet, netuid, 500 / (rank + 1))
        await client.wait_for_epoch(netuid)  # permits are assigned at the epoch
        return netuid
    finally:
        await client.close()


def neuron_command(neuron: Neuron, args, netuid: int, sim_url: str, workdir: Path, victim: Neuron | None,
                   max_rounds: int | None = None) -> list[str]:
    wallet_flags = ["--wallet.name", neuron.wallet.name, "--wallet.hotkey", neuron.wallet.hotkey_str,
                    "--wallet.path", str(workdir / "wallets")]
    common = ["--netuid", str(netuid), "--subtensor.network", "sim", "--subtensor.chain_endpoint", sim_url,
              "--axon.ip", "127.0.0.1", "--axon.port", str(neuron.port), "--neuron.state_dir", str(neuron.state_dir),
              "--neuron.cache_dir", args.cache_dir, "--data.preset", args.preset,
              *wallet_flags]
    if args.model:
        common += ["--model.name_or_path", args.model]
    if args.wandb_off:
        common.append("--wandb.off")
    common += ["--round.round_blocks", str(args.round_blocks), "--round.train_blocks", str(args.train_blocks),
               "--round.overlap" if args.overlap else "--no-round.overlap"]
    if neuron.role == "validator":
        threads = max(1, (os.cpu_count() or 1) // args.validators)
        flags = ["--round.max_rounds", str(max_rounds or args.rounds), "--neuron.torch_threads", str(threads)]
        for flag, value in (("--recipe.inner_steps", args.inner_steps), ("--recipe.pages_per_miner", args.pages_per_miner)):
            if value:  # 0: the preset's recipe decides
                flags += [flag, str(value)]
        return [sys.executable, "-m", "neurons.validator", *common, *flags]
    flags = ["--miner.behaviour", neuron.behaviour, *(f.format(workdir=workdir) for f in neuron.flags)]
    if neuron.name.endswith("-small"):
        flags += ["--miner.capacity_gb", str(SMALL_MINER_GB)]
    if neuron.behaviour == "copy" and not neuron.flags:
        flags += ["--miner.copy_from_dir", str(victim.state_dir)]
    if args.team_size > 1 and neuron.name == TEAM_MINER:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                str(args.team_size), "-m", "neurons.miner", *common, *flags]
    return [sys.executable, "-m", "neurons.miner", *common, *flags]


MINER_NICENESS = 5


def start(neuron: Neuron, command: list[str], logs: Path, append: bool = False) -> None:
    """Start a neuron in its own process session. Every neuron shares this one machine: miners run
    at a lower CPU priority, so the validators' scoring, which the round's schedule waits for,
    keeps pace while the miners train through it (on a real subnet each has its own machine)."""
    log = (logs / f"{neuron.name}.log").open("a" if append else "w")
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    niceness = MINER_NICENESS if neuron.role == "miner" else 0
    neuron.process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True, preexec_fn=lambda: os.nice(niceness))


def peak_memory_mb(process: subprocess.Popen | None) -> float | None:
    """The process's peak resident memory (Linux VmHWM), for min_compute.yml."""
    try:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, AttributeError, ValueError):
        pass
    return None


def stop(process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def read_jsonl(path: Path) -> list[dict]:
    """The whole lines of a JSON-lines file a running neuron may still be appending to."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:  # blank, or half-written by a crash (the validator cuts it at its next append)
            continue
    return found


def last_error_line(log: Path) -> str:
    """The last line of a log that says what went wrong (an exception's, or the last one)."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.exists() else []
    errors = [line for line in lines if "Error" in line or "ERROR" in line]
    return (errors or lines or ["(no log)"])[-1].strip()


def rounds_done(validator: Neuron) -> list[dict]:
    return read_jsonl(validator.state_dir / "rounds.jsonl")


def watch_rounds(args, validator: Neuron, miners: list[Neuron], console: Console, memory: dict,
                 others: list[Neuron], revive: Callable[[Neuron], None], crasher: Crasher) -> list[dict]:
    """Follow `validator`'s rounds (the lead's, or with --kill-lead the successor's) until every
    validator still running has done --rounds, applying the chaos options on the way."""
    kill_name, _, kill_round = args.kill_miner.partition("@")
    killed = False
    lead = next((o for o in others if o.name == "validator"), None)  # with --kill-lead: the one to kill
    lead_killed = lead_revived = False
    rounds_lost_at_most = 2 * crasher.planned  # a kill costs its round and the one its restart misses
    deadline = time.monotonic() + 60 + (args.rounds + rounds_lost_at_most) * args.round_blocks * args.block_time * 3
    exited_at = 0.0  # when the followed validator exited
    progress = Progress(TextColumn("[bold]rounds"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TextColumn("{task.description}"), TimeElapsedColumn(), console=console)
    with progress:
        task = progress.add_task("starting", total=args.rounds)
        while True:
            for neuron in [validator, *others, *miners]:
                if neuron.process.poll() is None:
                    memory[neuron.name] = peak_memory_mb(neuron.process) or memory.get(neuron.name)
            records = rounds_done(validator)
            if records:
                last = records[-1]
                progress.update(task, completed=len(records),
                                description=f"held-out loss {last['heldout_loss_after']:.3f}, "
                                            f"accepted {len(last['accepted'])}")
            if kill_name and not killed and len(records) >= int(kill_round or 1):
                victim = next(m for m in miners if m.name == kill_name)
                os.killpg(victim.process.pid, signal.SIGKILL)
                killed = True
                console.log(f"chaos: killed {victim.name} (uid {victim.uid}) after round {len(records)}")
            if lead is not None and not lead_killed and len(rounds_done(lead)) >= args.kill_lead:
                os.killpg(lead.process.pid, signal.SIGKILL)
                lead_killed = True
                console.log(f"chaos: killed the lead {lead.name} (uid {lead.uid}) after round "
                            f"{len(rounds_done(lead))}; {validator.name} must take over")
            if lead_killed and args.revive_lead and not lead_revived and len(records) >= args.revive_lead:
                revive(lead)
                lead_revived = True
                console.log(f"chaos: restarted {lead.name} after {validator.name}'s round {len(records)}; it must "
                            "catch up before it leads again")
            others_done = all(len(rounds_done(o)) >= args.rounds or o.process.poll() is not None for o in others)
            if len(records) >= args.rounds and others_done:
                return records
            if validator.process.poll() is not None:  # give the others their last round's check
                exited_at = exited_at or time.monotonic()
                if others_done or time.monotonic() - exited_at > LAST_CHECK_SECONDS:
                    return records
            if time.monotonic() > deadline:
                raise TimeoutError("rounds did not finish in time; see the logs")
            crasher.wait(0.5)  # a kill restarts its victim before this loop looks at it again


async def read_chain_outcome(sim_url: str, netuid: int) -> dict[int, dict]:
    client = await open_client("sim", sim_url).connect()
    try:
        await client.wait_for_epoch(netuid)  # incentive/emission of weights set in the last round
        graph = await client.subnets.metagraph(netuid, commitments=False)
        return {n.uid: {"incentive": float(n.incentive), "emission": float(n.emission.rao) / 1e9,
                        "hotkey": n.hotkey} for n in graph.neurons}
    finally:
        await client.close()


def crash_chaos(args, neurons: list[Neuron], netuid: int, sim_url: str, workdir: Path, victim: Neuron, logs: Path,
                console: Console) -> Crasher:
    """The --crash-* kills: each victim is started again at once with the same command and state
    dir (a validator with the rounds it has left to do, so the run ends when the lead has done
    --rounds)."""
    crasher = Crasher(sim_url, args.round_blocks, args.train_blocks, args.rounds, args.preset, neurons[0].state_dir,
                      workdir / "chaos.jsonl", console.log, [k for k in args.crash_truncate.split(",") if k])
    by_name = {n.name: n for n in neurons}
    unknown = sorted(set(args.crash_miners) - {n.name for n in neurons if n.role == "miner"})
    if unknown:
        raise SystemExit(f"--crash-miner: no miner named {', '.join(unknown)} (miners: "
                         + ", ".join(n.name for n in neurons if n.role == "miner") + ")")

    def restart(neuron: Neuron) -> None:
        left = max(1, args.rounds - len(rounds_done(neuron))) if neuron.role == "validator" else None
        start(neuron, neuron_command(neuron, args, netuid, sim_url, workdir, victim, max_rounds=left), logs,
              append=True)

    for name, count in {"validator": args.crash_lead, **args.crash_miners}.items():
        if count:
            neuron = by_name[name]
            crasher.add(Victim(neuron, neuron.role, logs / f"{name}.log", restart,
                               plan_kills(name, neuron.role, count, args.rounds, args.train_blocks, args.chaos_seed)))
    return crasher


def main(argv: list[str] | None = None, miner_plans: list[MinerPlan] | None = None) -> int:
    """`miner_plans`: the miners to run instead of the main job's five (and --small-miners)."""
    args = parse_args(argv)
    # The neurons run in their own process groups: a SIGTERM to the runner (timeout, docker stop)
    # must still stop them and the chain, so it unwinds like Ctrl-C instead of ending at once.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    console = Console()
    workdir = Path(args.out or REPO / "runs" / time.strftime("local-%Y%m%d-%H%M%S")).resolve()
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.add(sys.stderr, level="INFO", format="<green>{time:HH:mm:ss}</green> runner {message}")
    logger.add(logs / "runner.log", level="DEBUG")
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    started = time.monotonic()
    sim = start_simnet_process(workdir / "simnet.sqlite", sim_port, args.block_time,
                               log_path=logs / "simnet.log")
    neurons: list[Neuron] = []
    try:
        wait_until_ready(sim_url, timeout=60)
        wallets = workdir / "wallets"
        for i in range(args.validators):
            name = "validator" if i == 0 else f"validator{i}"
            neurons.append(Neuron(name, "validator", "validator", bootstrap.create_wallet(wallets, name),
                                  free_port(), workdir / name))
        for i, behaviour in enumerate([] if miner_plans else BEHAVIOURS + ["honest"] * args.small_miners):
            name = f"miner{i}-{behaviour}" + ("-small" if i >= len(BEHAVIOURS) else "")
            neurons.append(Neuron(name, "miner", behaviour, bootstrap.create_wallet(wallets, name), free_port(),
                                  workdir / name))
        for plan in miner_plans or []:
            wallet = bootstrap.create_wallet(wallets, plan.coldkey, hotkey=plan.name) if plan.coldkey else \
                bootstrap.create_wallet(wallets, plan.name)
            neurons.append(Neuron(plan.name, "miner", plan.behaviour, wallet, free_port(), workdir / plan.name,
                                  flags=list(plan.flags)))
        console.log("preparing the corpus, tokenizer and pages (cached after the first run)")
        Workload.build(args.preset, "shakespeare", Path(args.cache_dir).expanduser(),
                       pretrained=PretrainedSource(args.model) if args.model else None)
        console.log(f"simnet at {sim_url}; creating the subnet")
        netuid = asyncio.run(setup_chain(args, workdir, neurons, sim_url))
        # The summary follows the lead, or with --kill-lead the validator that must take over.
        validator = neurons[1] if args.kill_lead else neurons[0]
        miners = [n for n in neurons if n.role == "miner"]
        others = [n for n in neurons if n.role == "validator" and n is not validator]
        victim = miners[0]
        for neuron in neurons:
            start(neuron, neuron_command(neuron, args, netuid, sim_url, workdir, victim), logs)
        validators = [n for n in neurons if n.role == "validator"]  # most stake first: the first leads
        console.log(f"subnet {netuid}: validators " + ", ".join(f"{v.name}=uid{v.uid}" for v in validators)
                    + f" ({validators[0].name} leads); miners "
                    + ", ".join(f"{m.name}=uid{m.uid}" for m in miners))
        memory: dict[str, float | None] = {}

        def revive(neuron: Neuron) -> None:  # the rounds left to the successor, so both end together
            start(neuron, neuron_command(neuron, args, netuid, sim_url, workdir, victim,
                                         max_rounds=max(1, args.rounds - args.revive_lead)), logs, append=True)

        watch = CommitmentWatch(sim_url, netuid, neurons[0].wallet.hotkey.ss58_address,
                                workdir / "chain_commitments.jsonl").start()
        crasher = crash_chaos(args, neurons, netuid, sim_url, workdir, victim, logs, console)
        records = watch_rounds(args, validator, miners, console, memory, others, revive, crasher)
        crasher.close()
        if not records and validator.process.poll():
            raise SystemExit(f"{validator.name} exited with code {validator.process.returncode} before its first "
                             f"round: {last_error_line(logs / f'{validator.name}.log')} (see {logs})")
        validator.process.wait(timeout=120 + 4 * args.round_blocks * args.block_time)
        watch.stop()
        outcome = asyncio.run(read_chain_outcome(sim_url, netuid))
    finally:
        for neuron in neurons:
            stop(neuron.process)
        stop(sim)
    rows = [MinerRow(name=m.name, uid=m.uid, hotkey=m.wallet.hotkey.ss58_address, behaviour=m.behaviour,
                     incentive=outcome[m.uid]["incentive"], emission=outcome[m.uid]["emission"],
                     **miner_figures(m.state_dir))
            for m in miners]
    checkpoint = validator.state_dir / "checkpoints" / f"{records[-1]['new_checkpoint']}.safetensors" \
        if records else None
    extra = {"peak_memory_mb": memory,
             "checkpoint_bytes": checkpoint.stat().st_size if checkpoint and checkpoint.exists() else None}
    summary = write_outputs(workdir, records, rows, validator.state_dir, not args.wandb_off,
                            seconds=time.monotonic() - started, extra=extra)
    render_summary(console, summary)
    console.log(f"wrote {workdir / 'summary.json'} (logs in {logs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
