"""A long run of the local subnet: the main job for many rounds, then whether every honest miner
was accepted in every round the validator scored, which digit boundaries the round index
crossed (file names, sort orders and seeds that change width there), and the held-out curve.

    python -m bench.long_run --rounds 120 --out runs/long
    python -m bench.long_run --from runs/long        # read a finished run again

Any other argument goes to `scripts/run_local_subnet.py` unchanged. The figures go to
`results/long_run.json` and the run directory (the runner's own summary, plots and logs).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from scripts.run_local_subnet import read_jsonl

REPO = Path(__file__).resolve().parents[1]


def digit_boundaries(first: int, last: int) -> list[int]:
    """Powers of ten in (first, last]: the round indices where the index gains a digit."""
    return [10 ** k for k in range(1, len(str(max(last, 1))) + 1) if first < 10 ** k <= last]


def honest_verdicts(run: Path, summary: dict) -> dict[str, dict]:
    """Per honest miner: rounds scored, rounds accepted, and each rejection with its reason."""
    honest = {m["hotkey"]: m["name"] for m in summary["miners"] if m["behaviour"] == "honest"}
    verdicts = {name: {"scored": 0, "accepted": 0, "missing": [], "rejected": []} for name in honest.values()}
    for line in read_jsonl(run / "validator" / "scores.jsonl"):
        for hotkey, name in honest.items():
            report = line["reports"].get(hotkey)
            v = verdicts[name]
            if report is None:
                v["missing"].append(line["round"])
                continue
            v["scored"] += 1
            if report["accepted"]:
                v["accepted"] += 1
            else:
                v["rejected"].append({"round": line["round"], "reason": report["reason"][:200]})
    return verdicts


def read_run(run: Path, seconds: float | None) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    rounds = [r["round"] for r in summary["rounds"]]
    losses = [r["heldout_loss"] for r in summary["rounds"]]
    verdicts = honest_verdicts(run, summary)
    first, last = (min(rounds), max(rounds)) if rounds else (0, 0)
    every = bool(rounds) and all(v["scored"] == len(rounds) and v["accepted"] == v["scored"]
                                 for v in verdicts.values())
    return {
        "run": str(run), "seconds": seconds, "rounds": len(rounds), "first_round": first, "last_round": last,
        "skipped_rounds": sorted(set(range(first, last + 1)) - set(rounds)),
        "digit_boundaries_crossed": digit_boundaries(first, last),
        "initial_heldout_loss": summary["initial_heldout_loss"],
        "heldout_loss": dict(zip(map(str, rounds), losses)),
        "honest": verdicts, "honest_accepted_every_round": every,
        "honest_incentive_share": summary.get("honest_incentive_share"),
    }


def print_result(res: dict) -> None:
    losses = list(res["heldout_loss"].values())
    print(f"{res['rounds']} rounds ({res['first_round']}..{res['last_round']}), skipped {res['skipped_rounds'] or 'none'}, "
          f"digit boundaries crossed: {res['digit_boundaries_crossed']}")
    if losses:
        print(f"held-out loss {res['initial_heldout_loss']:.3f} -> {losses[-1]:.3f} "
              f"(min {min(losses):.3f}); honest incentive share {res['honest_incentive_share']}")
    for name, v in res["honest"].items():
        print(f"  {name}: accepted {v['accepted']}/{v['scored']} scored rounds, missing {v['missing'] or 'none'}")
        for r in v["rejected"]:
            print(f"    round {r['round']}: {r['reason']}")
    print(f"honest miners accepted in every round: {res['honest_accepted_every_round']}")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=120)
    p.add_argument("--out", default="", help="run directory (default: runs/long-<time>)")
    p.add_argument("--from", dest="existing", default="", help="only read this finished run")
    p.add_argument("--results", default=str(REPO / "bench" / "results" / "long_run.json"))
    args, runner_args = p.parse_known_args(argv)
    if args.existing:
        run, seconds = Path(args.existing), None
    else:
        run = Path(args.out or REPO / "runs" / time.strftime("long-%Y%m%d-%H%M%S")).resolve()
        t0 = time.monotonic()
        subprocess.run([sys.executable, str(REPO / "scripts" / "run_local_subnet.py"), "--rounds", str(args.rounds),
                        "--out", str(run), *runner_args], check=True, cwd=REPO)
        seconds = round(time.monotonic() - t0, 1)
    res = read_run(run, seconds)
    if args.results:
        Path(args.results).write_text(json.dumps(res, indent=1))
    print_result(res)
    return res


if __name__ == "__main__":
    main()
