"""The adversarial harness's shared pieces: who runs (miner specs from `--attackers`, `--honest`,
`--speeds`), the per-strategy table with its PNG, and the bars of the issue it is checked against.
Both runners use them: `bench/adversarial.py` (the real local subnet) and
`bench/adversarial_rounds.py` (the same behaviours in process, for quick measurements).
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from template.config import MINER_BEHAVIOURS, MINER_PARTNER_BEHAVIOURS

# Attacks whose contribution carries none of the assigned work: at most 1% of the miners' emission each.
NO_USEFUL_WORK = frozenset({"zero", "noise", "sign_flip", "copy", "copy_noise", "stale", "global_replay",
                            "wrong_pages", "late", "malformed", "scaled_100"})
TRIO = "sybil_trio"
NO_WORK_SHARE_MAX = 0.01
LAZY_QUARTER_MAX = 0.25  # of an honest miner's emission
HONEST_TOTAL_MIN = 0.95  # of the miners' emission, in runs whose attackers do no useful work
FAIR_SHARE_MIN = 0.5  # every honest miner, of its share proportional to compute among the honest
LOSS_TOLERANCE = 0.02  # held-out and sealed loss within 2% of the attack-free run


@dataclass(frozen=True)
class MinerSpec:
    name: str
    behaviour: str
    step_budget: int = 0  # honest miners of a slower device (0: the recipe's H)
    speed: float = 1.0
    partner: str = ""  # a colluding partner's name (copy-family behaviours)
    group: str = ""  # sybil group: its members share one coldkey and a directory


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Who runs and for how long: the flags both runners share."""
    p.add_argument("--honest", type=int, default=3)
    p.add_argument("--speeds", default="", help="share of H each honest miner completes, e.g. 1,1,0.33")
    p.add_argument("--attackers", default="", help="NAME:COUNT,... of template.config.MINER_BEHAVIOURS")
    p.add_argument("--rounds", type=int, default=8)


def miner_specs(honest: int, speeds: str, attackers: str, inner_steps: int) -> list[MinerSpec]:
    """Honest miners first (their speeds: the share of the round's H steps each completes), then
    the attackers, `name:count` each; copy-family attackers collude with the first honest miner;
    `sybil_trio:k` is k hotkeys of one coldkey (k a multiple of 3 makes k/3 trios)."""
    rates = [float(s) for s in speeds.split(",") if s.strip()] if speeds else []
    if rates and len(rates) != honest:
        raise SystemExit(f"--speeds gives {len(rates)} speeds for {honest} honest miners")
    if any(not 0 < r <= 1 for r in rates):
        raise SystemExit("--speeds: each speed is the share of H a miner completes, in (0, 1]")
    specs = []
    for i in range(honest):
        rate = rates[i] if rates else 1.0
        budget = 0 if rate >= 1 else max(1, round(rate * inner_steps))
        specs.append(MinerSpec(f"h{i}-honest", "honest", budget, rate))
    if not specs:
        raise SystemExit("--honest must be at least 1 (the copy-family attackers need a victim, the bars a reference)")
    for item in (a for a in attackers.split(",") if a.strip()):
        name, _, count = item.strip().partition(":")
        if name not in MINER_BEHAVIOURS or name == "honest":
            raise SystemExit(f"--attackers: unknown behaviour {name!r} (known: {', '.join(MINER_BEHAVIOURS[1:])})")
        try:
            n = int(count or 1)
        except ValueError:
            raise SystemExit(f"--attackers {item!r}: expected NAME:COUNT") from None
        for k in range(n):
            group = f"trio{k // 3}" if name == TRIO else ""
            partner = specs[0].name if name in MINER_PARTNER_BEHAVIOURS or name == "noise" else ""
            specs.append(MinerSpec(f"a{len(specs)}-{name}", name, partner=partner, group=group))
    return specs


# ------------------------------------------------------------------ results


@dataclass
class MinerResult:
    name: str
    behaviour: str
    uid: int
    mean_score: float  # the validator's round pay (what its weights follow), mean over the rounds
    rounds_accepted: int
    incentive: float  # read from the chain (in process: the validator's weights)
    emission: float
    compute: int  # inner-loop tokens the miner reported over the run
    speed: float = 1.0


@dataclass
class RunResult:
    label: str
    miners: list[MinerResult]
    heldout: list[float]  # the global model's held-out loss, before round 1 then after each round
    sealed: list[float] = field(default_factory=list)  # loss on pages no validator ever evaluates on
    rounds: int = 0
    seconds: float = 0.0
    setting: dict = field(default_factory=dict)
    reports: list[dict] = field(default_factory=list)  # per round: miner name -> what the validator said

    def emission_share(self, m: MinerResult) -> float:
        total = sum(x.emission for x in self.miners)
        return m.emission / total if total > 0 else 0.0

    def rows(self) -> list[dict]:
        """One row per strategy: mean score, emission share (summed over its miners), compute
        share and share per unit of compute (1: paid exactly in proportion to its compute)."""
        total_compute = sum(m.compute for m in self.miners) or 1
        by: dict[str, list[MinerResult]] = {}
        for m in self.miners:
            key = m.behaviour if m.behaviour != "honest" or m.speed >= 1 else f"honest x{m.speed:g}"
            by.setdefault(key, []).append(m)
        rows = []
        for key, members in by.items():
            share = sum(self.emission_share(m) for m in members)
            compute = sum(m.compute for m in members) / total_compute
            rows.append({"strategy": key, "miners": len(members),
                         "mean_score": statistics.mean(m.mean_score for m in members),
                         "accepted": f"{sum(m.rounds_accepted for m in members)}/{len(members) * self.rounds}",
                         "emission_share": share, "per_miner": share / len(members), "compute_share": compute,
                         "share_per_compute": share / compute if compute > 0 else (0.0 if share == 0 else float("inf"))})
        return rows

    def to_json(self) -> dict:
        return {"label": self.label, "rounds": self.rounds, "seconds": round(self.seconds, 1), "setting": self.setting,
                "heldout": self.heldout, "sealed": self.sealed, "miners": [asdict(m) for m in self.miners],
                "rows": self.rows(), "reports": self.reports}

    @classmethod
    def from_json(cls, data: dict) -> "RunResult":
        return cls(data["label"], [MinerResult(**m) for m in data["miners"]], data["heldout"], data.get("sealed", []),
                   data.get("rounds", 0), data.get("seconds", 0.0), data.get("setting", {}), data.get("reports", []))


def report_line(report) -> dict:
    """What a validator's `ScoreReport` says of one miner in one round, for the result file."""
    def z(test):
        return None if test is None else round(float(test.z), 2)
    return {"reason": report.reason[:120], "score": round(report.score, 4), "pay": round(report.pay, 4),
            "work": report.work,
            "evidence": report.evidence_factor, "usefulness": report.usefulness_factor,
            "gain_z": None if report.heldout is None else round(report.heldout.z, 2), "known_z": z(report.known),
            "assignment_z": z(report.assignment), "group": len(report.group),
            "cross": [round(e.z, 1) for e in report.cross]}


# ------------------------------------------------------------------ bars


@dataclass(frozen=True)
class Bar:
    name: str
    measured: float
    limit: float
    passed: bool
    detail: str = ""


def bars(run: RunResult, baseline: RunResult | None = None) -> list[Bar]:
    """The issue's bars that this run can be held to (a bar about a strategy the run lacks is
    left out; the loss bars need the attack-free `baseline`)."""
    out: list[Bar] = []
    share = {m.name: run.emission_share(m) for m in run.miners}
    honest = [m for m in run.miners if m.behaviour == "honest"]
    full_honest = [m for m in honest if m.speed >= 1] or honest
    honest_mean = statistics.mean(share[m.name] for m in full_honest)
    for m in run.miners:
        if m.behaviour in NO_USEFUL_WORK:
            out.append(Bar(f"{m.name}: no useful work, share of miners' emission", share[m.name], NO_WORK_SHARE_MAX,
                           share[m.name] <= NO_WORK_SHARE_MAX))
    lazy = [m for m in run.miners if m.behaviour == "lazy_quarter"]
    for m in lazy:
        ratio = share[m.name] / honest_mean if honest_mean > 0 else 0.0
        out.append(Bar(f"{m.name}: share of an honest miner's", ratio, LAZY_QUARTER_MAX, ratio <= LAZY_QUARTER_MAX))
    if len(lazy) >= 4:
        ratio = sum(share[m.name] for m in lazy) / honest_mean if honest_mean > 0 else 0.0
        out.append(Bar(f"{len(lazy)} lazy_quarter sybils together, in honest shares", ratio, 1.0, ratio <= 1.0))
    trio = [m for m in run.miners if m.behaviour == TRIO]
    if trio:
        runs = max(1, len(trio) // 3)  # each three hotkeys send one training run
        ratio = sum(share[m.name] for m in trio) / runs / honest_mean if honest_mean > 0 else 0.0
        out.append(Bar("sybil trio together (one run), in honest shares", ratio, 1.0, ratio <= 1.0))
    for m in run.miners:
        if m.behaviour == "evaldata":
            ratio = share[m.name] / honest_mean if honest_mean > 0 else 0.0
            out.append(Bar(f"{m.name}: evaluation-data training, share of an honest miner's", ratio, 1.0, ratio <= 1.0))
    attackers = [m for m in run.miners if m.behaviour != "honest"]
    if attackers and all(m.behaviour in NO_USEFUL_WORK for m in attackers):
        total = sum(share[m.name] for m in honest)
        out.append(Bar("honest miners together, share of miners' emission", total, HONEST_TOTAL_MIN,
                       total >= HONEST_TOTAL_MIN))
    honest_total, honest_compute = sum(share[m.name] for m in honest), sum(m.compute for m in honest)
    if len(honest) > 1 and honest_compute > 0 and honest_total > 0:
        for m in honest:
            fair = honest_total * m.compute / honest_compute
            ratio = share[m.name] / fair if fair > 0 else 0.0
            out.append(Bar(f"{m.name} (speed {m.speed:g}): share of its fair share", ratio, FAIR_SHARE_MIN,
                           ratio >= FAIR_SHARE_MIN))
    if baseline is not None and baseline.heldout and run.heldout:
        ratio = run.heldout[-1] / baseline.heldout[-1] - 1
        out.append(Bar("global held-out loss vs the attack-free run", ratio, LOSS_TOLERANCE, ratio <= LOSS_TOLERANCE,
                       f"{run.heldout[-1]:.4f} vs {baseline.heldout[-1]:.4f}"))
        if run.sealed and baseline.sealed and any(m.behaviour == "evaldata" for m in run.miners):
            # the bar for evaluation-data training: what the network learnt about text
            # no miner could ever have seen (other runs keep the curve in result.json's `sealed`)
            drop, base_drop = run.sealed[0] - run.sealed[-1], baseline.sealed[0] - baseline.sealed[-1]
            ratio = 1 - drop / base_drop if base_drop > 0 else 0.0
            out.append(Bar("sealed-page loss drop short of the attack-free run's", ratio, LOSS_TOLERANCE,
                           ratio <= LOSS_TOLERANCE, f"drop {drop:.4f} vs {base_drop:.4f}"))
    return out


# ------------------------------------------------------------------ output


COLUMNS = [("strategy", "strategy", "s"), ("miners", "miners", "d"), ("mean_score", "mean pay", ".4f"),
           ("accepted", "accepted", "s"), ("emission_share", "emission share", ".3f"),
           ("per_miner", "per miner", ".3f"), ("compute_share", "compute share", ".3f"),
           ("share_per_compute", "share / compute", ".2f")]


def markdown_table(run: RunResult) -> str:
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in run.rows():
        lines.append("| " + " | ".join(format(row[key], fmt) for key, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def bars_table(found: Sequence[Bar]) -> str:
    lines = ["| bar | measured | limit | |", "|---|---|---|---|"]
    for b in found:
        lines.append(f"| {b.name} | {b.measured:.4f} | {b.limit:g} | {'pass' if b.passed else 'FAIL'} "
                     f"{b.detail} |")
    return "\n".join(lines)


def plot(run: RunResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = run.rows()
    labels = [r["strategy"] for r in rows]
    colours = ["tab:green" if r["strategy"].startswith("honest") else "tab:red" for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
    for ax, key, title in ((axes[0], "mean_score", "mean pay"), (axes[1], "per_miner", "emission share per miner"),
                           (axes[2], "share_per_compute", "emission share / compute share")):
        ax.bar(labels, [min(r[key], 10.0) for r in rows], color=colours)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=60)
        ax.grid(axis="y", alpha=0.3)
    axes[2].axhline(1.0, color="black", linewidth=0.8)
    fig.suptitle(f"{run.label}: {run.rounds} rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(run: RunResult, out: Path, baseline: RunResult | None = None) -> list[Bar]:
    """`out`/result.json, table.md and strategies.png; returns the bars."""
    out.mkdir(parents=True, exist_ok=True)
    found = bars(run, baseline)
    (out / "result.json").write_text(json.dumps({**run.to_json(), "bars": [asdict(b) for b in found]}, indent=1))
    (out / "table.md").write_text(markdown_table(run) + "\n\n" + bars_table(found) + "\n")
    plot(run, out / "strategies.png")
    return found
