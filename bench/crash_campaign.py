"""The long kill -9 campaign: the local subnet for 40 rounds with its lead killed at 10 seeded
moments (spread over the run and over the phases of a round) and honest miners killed too, each
started again at once (the first kills also leave a half-written record line, a torn state file,
cut AdamW moments and residual); then the crash bars checked (scripts/check_crash_run.py) and
the figures printed and written to JSON.

The lead keeps the archive of merged contributions for its last 32 rounds only; so that every
round of a longer run can be replayed at the end, the campaign copies each round's archive once
its record is written.

    python -m bench.crash_campaign --out bench/results/crash_campaign.json    # ~25 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from scripts.check_crash_run import check_crash_run, print_report

REPO = Path(__file__).resolve().parents[1]


class ArchiveMirror:
    """Copies `state_dir/archive/round-R/` to `target/round-R/` once round R's record is written."""

    def __init__(self, state_dir: Path, target: Path):
        self.state_dir, self.target = state_dir, target
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="archive-mirror", daemon=True)

    def start(self) -> "ArchiveMirror":
        self.target.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.copy_new()

    def recorded_rounds(self) -> list[int]:
        """Round indices with a whole record line (quietly: a half-written one is the lead's to cut)."""
        path = self.state_dir / "rounds.jsonl"
        found = []
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            try:
                found.append(int(json.loads(line)["round_index"]))
            except (ValueError, KeyError, TypeError):
                continue
        return found

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.copy_new()

    def copy_new(self) -> None:
        for round_index in self.recorded_rounds():
            source = self.state_dir / "archive" / f"round-{round_index}"
            copy = self.target / source.name
            if source.exists() and not copy.exists():
                shutil.copytree(source, copy.with_suffix(".partial"), dirs_exist_ok=True)
                copy.with_suffix(".partial").rename(copy)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--lead-kills", type=int, default=10)
    p.add_argument("--miner-kills", action="append", default=[], metavar="NAME:N",
                   help="default: miner0-honest:3 and miner1-honest:2")
    p.add_argument("--round-blocks", type=int, default=96)
    p.add_argument("--train-blocks", type=int, default=48)
    p.add_argument("--inner-steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truncate", default="record_tail,state,moments,residual",
                   help="files the first kills also cut as a crash mid-write would (run_local_subnet --crash-truncate)")
    p.add_argument("--run-dir", default="", help="the run's --out (default: a temporary folder, kept)")
    p.add_argument("--out", default="bench/results/crash_campaign.json")
    p.add_argument("--check-only", action="store_true", help="check the run already in --run-dir again")
    args = p.parse_args(argv)
    if args.check_only and not args.run_dir:
        p.error("--check-only needs --run-dir")
    miner_kills = args.miner_kills or ["miner0-honest:3", "miner1-honest:2"]
    run_dir = Path(args.run_dir or REPO / "runs" / time.strftime("crash-campaign-%Y%m%d-%H%M%S")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "scripts/run_local_subnet.py", "--out", str(run_dir), "--wandb.off",
               "--rounds", str(args.rounds), "--round-blocks", str(args.round_blocks),
               "--train-blocks", str(args.train_blocks), "--inner-steps", str(args.inner_steps),
               "--crash-lead", str(args.lead_kills), "--chaos-seed", str(args.seed), "--crash-truncate", args.truncate]
    for kill in miner_kills:
        command += ["--crash-miner", kill]
    if not args.check_only:
        mirror = ArchiveMirror(run_dir / "validator", run_dir / "archive-mirror").start()
        with (run_dir / "campaign.log").open("w") as log:
            result = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        mirror.stop()
        if result.returncode != 0:
            print(f"the run failed (exit {result.returncode}); see {run_dir / 'campaign.log'}")
            return result.returncode
    seconds = json.loads((run_dir / "summary.json").read_text())["seconds"]
    report = check_crash_run(run_dir, archives=run_dir / "archive-mirror")
    lead = report.lead
    phases = Counter(f"{k['role']}:{k['phase']}" for k in report.kills)
    figures = {
        "command": command[1:], "run_dir": str(run_dir), "seconds": round(seconds, 1), "ok": report.ok,
        "failures": report.failures, "kills_done": len(report.kills), "kills_not_done": report.kills_not_done,
        "kills_by_phase": dict(sorted(phases.items())),
        "lead": lead, "miners": report.miners, "kills": report.kills,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=1))
    print(f"{len(report.kills)} kills ({report.kills_not_done} planned not done) in {seconds / 60:.1f} min: "
          + ", ".join(f"{k} {v}" for k, v in sorted(phases.items())))
    print_report(report)
    print(f"wrote {args.out}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
