"""Check a local-subnet run with --crash-* kills against the crash bars:

* the lead: its audit trail is whole (every digest it committed on chain has its record, no fork,
  every recorded round replays: `template.audit.trail`), no record it held when killed is gone,
  and the rounds without a record are only rounds it was down for;
* each killed miner: from its first kill on, the lead's records miss its contribution only in
  rounds it was down for (of the rounds in which every honest miner that was never killed got its
  contribution in: a round an undisturbed miner missed too says nothing about crashes), and after
  each restart it carried its AdamW moments over (at least the steps it had trained).

Rounds the lead skipped while up because its previous round was still settling (its log says
so) are counted apart: the machine was too slow for the round length, which no kill causes.

A neuron counts as down from its kill until it logs that it serves again (plus `UP_SLACK_BLOCKS`
for the first chain read after that); a round it was down for is one it could not have joined:
the validator joins a round at most `train_blocks // 4` blocks after its start, a miner must be
up when the round's work is sent at its start.

    python scripts/check_crash_run.py --out runs/crash [--archives DIR] [--json report.json]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from template.audit.round_record import read_records  # noqa: E402
from template.audit.trail import check_trail, read_committed  # noqa: E402
from template.chain.round_clock import next_round, round_at  # noqa: E402
from template.training.presets import PRESET_SETTINGS  # noqa: E402

UP_SLACK_BLOCKS = 4
TRAINED = re.compile(r"round \d+ trained (\d+) steps")
CARRIED = re.compile(r"AdamW moments of unit \S+ carried over from \S+ \(step (\d+)\)")
OVERRUN = re.compile(r"round\(s\) ([\d, ]+) skipped: this validator was busy past their start")


def overrun_rounds(lead_log: str) -> set[int]:
    """Rounds the lead skipped, up, because its previous round was still settling when they began:
    a machine too slow for the round length (it happens without any kill), not a crash's loss."""
    return {int(r) for found in OVERRUN.findall(lead_log) for r in found.split(",")}


@dataclass
class Kill:
    name: str
    role: str
    phase: str
    block: int
    round: int
    last_recorded_round: int
    log_offset: int
    up_block: int | None  # when it served again; None: it never did
    facts: dict = field(default_factory=dict)


def read_kills(chaos_log: Path) -> tuple[dict, list[Kill], list[dict]]:
    """The run's settings, its kills (each with the block its victim was up again), and the kills
    planned but never done."""
    events = [json.loads(line) for line in chaos_log.read_text().splitlines() if line.strip()]
    run = next(e for e in events if e["event"] == "run")
    kills: list[Kill] = []
    for position, event in enumerate(events):
        if event["event"] != "kill":
            continue
        up = next((e["block"] for e in events[position + 1:] if e["event"] == "up" and e["name"] == event["name"]),
                  None)
        facts = {k: v for k, v in event.items() if k not in Kill.__dataclass_fields__ and k not in ("event", "time")}
        kills.append(Kill(event["name"], event["role"], event["phase"], event["block"], event["round"],
                          event["last_recorded_round"], event["log_offset"], up, facts))
    return run, kills, [e for e in events if e["event"] == "not_done"]


def lead_rounds_down(kill: Kill, round_blocks: int, train_blocks: int, last_round: int) -> set[int]:
    """Rounds the validator could not have recorded because of this kill: from the first round
    it had not recorded when killed to the last one it was too late to join when it came back."""
    first = max(kill.round, kill.last_recorded_round + 1)
    if kill.up_block is None:
        return set(range(first, last_round + 1))
    joins = next_round(kill.up_block + UP_SLACK_BLOCKS, round_blocks, train_blocks, train_blocks // 4).index
    return set(range(first, joins))


def miner_rounds_down(kill: Kill, round_blocks: int, train_blocks: int, last_round: int) -> set[int]:
    """Rounds whose work the miner could not have done: from the one it was killed in to the one
    under way when it served again."""
    if kill.up_block is None:
        return set(range(kill.round, last_round + 1))
    back = round_at(kill.up_block + UP_SLACK_BLOCKS, round_blocks, train_blocks).index
    return set(range(kill.round, back + 1))


def moments_after_restarts(log: bytes, kills: list[Kill]) -> list[dict]:
    """For each restart: the steps trained before the kill and the step of the moments it loaded.
    Moments the chaos cut in half cannot be kept: the restart must say so and go on without them."""
    results = []
    offsets = [k.log_offset for k in kills] + [len(log)]
    data = log
    since = 0  # moments start over after a restart that had to set its moments aside
    for kill, end in zip(kills, offsets[1:]):
        before = data[since:kill.log_offset].decode(errors="replace")
        after = data[kill.log_offset:end].decode(errors="replace")
        if kill.facts.get("truncated") == "moments":
            since = kill.log_offset
        trained = sum(int(s) for s in TRAINED.findall(before))
        carried = CARRIED.search(after)
        step = int(carried.group(1)) if carried else None
        kept = None if trained == 0 else step is not None and step >= trained  # None: nothing to carry yet
        result = {"kill_block": kill.block, "phase": kill.phase, "steps_trained_before": trained,
                  "moments_step_loaded": step, "kept": kept}
        if kill.facts.get("truncated") == "moments":
            result.update(kept=None, truncated=True,
                          set_aside=bool(re.search(r"adamw-moments\.safetensors is corrupt .*set aside", after)))
        results.append(result)
    return results


@dataclass
class CrashReport:
    kills: list[dict]
    kills_not_done: int
    lead: dict
    miners: dict[str, dict]
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures


def check_crash_run(out: Path, archives: Path | None = None) -> CrashReport:
    run, kills, not_done = read_kills(out / "chaos.jsonl")
    round_blocks, train_blocks, preset = run["round_blocks"], run["train_blocks"], run["preset"]
    state_dir = out / "validator"
    committed = read_committed(out / "chain_commitments.jsonl")
    trail = check_trail(state_dir, committed, preset, PRESET_SETTINGS[preset].vocab_size, archives)
    records = read_records(state_dir / "rounds.jsonl")
    last_round = max(trail.rounds, default=-1)
    failures = []
    if not committed:
        failures.append("no commitment of the lead was seen on chain")
    if trail.committed_without_record:
        failures.append(f"committed on chain but not in rounds.jsonl: {trail.committed_without_record}")
    if trail.recorded_twice:
        failures.append(f"rounds recorded twice: {trail.recorded_twice}")
    if trail.forks:
        failures.append("fork: " + "; ".join(f"round {f.round_index} starts from {f.base_checkpoint[:12]}, round "
                                             f"{f.previous_round} ended at {f.previous_new_checkpoint[:12]}"
                                             for f in trail.forks))
    for round_index, why in trail.not_reproduced.items():
        failures.append(f"round {round_index} does not replay: {why}")

    lead_kills = [k for k in kills if k.role == "validator"]
    down: set[int] = set()
    per_kill = []
    for kill in lead_kills:
        rounds = lead_rounds_down(kill, round_blocks, train_blocks, last_round)
        down |= rounds
        lost = sorted(set(trail.missing_rounds) & rounds)
        per_kill.append({"block": kill.block, "round": kill.round, "phase": kill.phase, "up_block": kill.up_block,
                         "rounds_down": sorted(rounds), "rounds_lost": lost})
        if kill.up_block is None:
            failures.append(f"{kill.name} killed at block {kill.block} never served again")
        if kill.last_recorded_round >= 0 and kill.last_recorded_round not in trail.rounds:
            failures.append(f"round {kill.last_recorded_round} was recorded when {kill.name} was killed, and is gone")
    lead_log = out / "logs" / "validator.log"
    overrun = overrun_rounds(lead_log.read_text(errors="replace") if lead_log.exists() else "")
    unexplained = sorted(set(trail.missing_rounds) - down - overrun)
    if unexplained:
        failures.append(f"rounds lost while the lead was up: {unexplained}")
    lead = {"rounds_recorded": len(trail.rounds), "first_round": min(trail.rounds, default=None),
            "last_round": last_round, "rounds_missing": trail.missing_rounds, "rounds_lost_while_up": unexplained,
            "rounds_skipped_overrun": sorted(set(trail.missing_rounds) & overrun - down),
            "rounds_reproduced": sum(why == "REPRODUCED" for why in trail.replays.values()),
            "digests_committed": trail.committed, "committed_without_record": trail.committed_without_record,
            "records_not_committed": trail.records_not_committed, "forks": len(trail.forks), "kills": per_kill}

    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {"miners": []}
    hotkeys = {m["name"]: m["hotkey"] for m in summary["miners"]}
    honest = {m["hotkey"] for m in summary["miners"] if m["behaviour"] == "honest"}
    killed = {hotkeys.get(k.name) for k in kills if k.role == "miner"}
    controls = honest - killed  # honest miners never killed: what an undisturbed miner got in

    def fair(record) -> bool:
        """Whether a round tells anything about a killed miner: every control miner's contribution
        reached the lead (not the lead's first round, before its address is on chain, nor a round
        an undisturbed honest miner finished late too)."""
        return controls <= set(record.contributions) if controls else bool(honest & set(record.contributions))

    miners = {}
    for name in sorted({k.name for k in kills if k.role == "miner"}):
        own = [k for k in kills if k.name == name]
        hotkey = hotkeys.get(name)
        if hotkey is None:
            failures.append(f"{name}: no hotkey in summary.json")
            continue
        miner_down = set().union(*(miner_rounds_down(k, round_blocks, train_blocks, last_round) for k in own))
        # Judged from its first kill on: a round it missed before ever being down is no crash's loss.
        first_kill = min(k.round for k in own)
        judged = [r for r in records if fair(r) and r.round_index >= first_kill]
        without = [r.round_index for r in judged if hotkey not in r.contributions]
        lost_up = sorted(set(without) - miner_down)
        moments = moments_after_restarts((out / "logs" / f"{name}.log").read_bytes(), own)
        miners[name] = {"kills": len(own), "rounds_without_contribution": without,
                        "rounds_not_judged": [r.round_index for r in records if r not in judged],
                        "rounds_down": sorted(miner_down), "rounds_lost_while_up": lost_up, "moments": moments}
        if lost_up:
            failures.append(f"{name}: no contribution in rounds {lost_up}, while it was up")
        for kill in own:
            if kill.up_block is None:
                failures.append(f"{name} killed at block {kill.block} never served again")
        for result in moments:
            if result.get("truncated") and not result["set_aside"]:
                failures.append(f"{name}: its AdamW moments cut in half at the kill at block {result['kill_block']} "
                                "were not set aside with an error on restart")
            if result["kept"] is False:
                failures.append(f"{name}: after the kill at block {result['kill_block']} its AdamW moments were not "
                                f"carried over ({result['steps_trained_before']} steps trained before, loaded "
                                f"{result['moments_step_loaded']})")
    return CrashReport([asdict(k) for k in kills], len(not_done), lead, miners, failures)


def print_report(report: CrashReport) -> None:
    """The report for a person: each kill, the lead's rounds, each miner's, then PASS or the failures."""
    lead = report.lead
    print(f"kills: {len(report.kills)} done, {report.kills_not_done} planned but not done")
    for kill in report.kills:
        print(f"  {kill['name']:<16} block {kill['block']:>5} round {kill['round']:>3} {kill['phase']:<18} "
              f"up again at block {kill['up_block']}")
    print(f"lead: {lead['rounds_recorded']} rounds recorded ({lead['first_round']}..{lead['last_round']}), missing "
          f"{lead['rounds_missing']}, lost while up {lead['rounds_lost_while_up']} (and skipped for an overrun "
          f"{lead['rounds_skipped_overrun']}), "
          f"{lead['rounds_reproduced']} REPRODUCED, {lead['digests_committed']} digests committed, "
          f"{len(lead['committed_without_record'])} without a record, {lead['forks']} forks")
    for name, miner in report.miners.items():
        checked = [m for m in miner["moments"] if m["kept"] is not None]
        print(f"{name}: {miner['kills']} kills, no contribution in {miner['rounds_without_contribution']} "
              f"(down for {miner['rounds_down']}), AdamW moments kept after {sum(m['kept'] for m in checked)}/"
              f"{len(checked)} restarts that had trained before")
    print("PASS" if report.ok else "FAIL:\n  " + "\n  ".join(report.failures))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a --crash-* run of the local subnet against the crash bars")
    parser.add_argument("--out", required=True, help="the run's --out directory")
    parser.add_argument("--archives", default="", help="round-R/ folders of contributions (default: the lead's)")
    parser.add_argument("--json", default="", help="write the report here")
    args = parser.parse_args(argv)
    report = check_crash_run(Path(args.out), Path(args.archives) if args.archives else None)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=1))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
