"""What the main job shows at the end: tables, summary.json, PNG plots, a wandb summary run."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from template.miner.round_ledger import read_ledger, train_fraction  # noqa: E402
from template.utils.wandb_run import open_run  # noqa: E402


@dataclass
class MinerRow:
    name: str
    uid: int
    hotkey: str
    behaviour: str
    incentive: float
    emission: float  # alpha emitted to the uid at the last epoch
    mean_score: float = 0.0
    rounds_accepted: int = 0
    train_fraction: float | None = None  # of its wall time from first order to last commitment, in its inner loop
    sync_bytes_per_round: float | None = None  # bytes fetched for a round's base, after its first round
    syncs: dict | None = None  # how its bases came: held / replayed / downloaded, counted


def miner_figures(state_dir: Path) -> dict:
    """A miner's own measurements (its `miner_rounds.jsonl`): the share of its time spent training,
    and the bytes it fetched per round in steady state (its first round, a join, left out)."""
    entries = [e for e in read_ledger(state_dir / "miner_rounds.jsonl") if e.committed > 0]
    steady = entries[1:]
    return {"train_fraction": train_fraction(entries),
            "sync_bytes_per_round": sum(e.sync_bytes for e in steady) / len(steady) if steady else None,
            "syncs": {how: sum(e.sync == how for e in entries) for how in ("held", "replayed", "downloaded")}}


def mean_scores(validator_dir: Path) -> dict[str, tuple[float, int, int]]:
    """hotkey -> (mean score over rounds, rounds accepted, rounds seen) from the validator's log."""
    path = validator_dir / "scores.jsonl"
    totals: dict[str, list[float]] = {}
    accepted: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            for hotkey, report in json.loads(line)["reports"].items():
                totals.setdefault(hotkey, []).append(float(report["score"]))
                accepted[hotkey] = accepted.get(hotkey, 0) + int(bool(report["accepted"]))
    return {hk: (sum(v) / len(v), accepted.get(hk, 0), len(v)) for hk, v in totals.items()}


def write_outputs(out: Path, records: list[dict], rows: list[MinerRow], validator_dir: Path, use_wandb: bool,
                  seconds: float, extra: dict | None = None) -> dict:
    scores = mean_scores(validator_dir)
    for row in rows:
        row.mean_score, row.rounds_accepted, _ = scores.get(row.hotkey, (0.0, 0, 0))
    history = json.loads((validator_dir / "validator_state.json").read_text()).get("heldout_history", [])
    initial = next((h["heldout_loss"] for h in history if h["round"] == -1), None)
    summary = {
        "initial_heldout_loss": initial,
        "rounds": [{"round": r["round_index"], "heldout_loss": r["heldout_loss_after"],
                    "accepted": len(r["accepted"]), "checkpoint": r["new_checkpoint"]} for r in records],
        "miners": [asdict(row) for row in rows],
        "seconds": round(seconds, 1),
        **(extra or {}),
    }
    honest = [r for r in rows if r.behaviour == "honest" and r.train_fraction is not None]
    if honest:
        summary["train_fraction_min"] = min(r.train_fraction for r in honest)
        steady = [r.sync_bytes_per_round for r in honest if r.sync_bytes_per_round is not None]
        summary["sync_bytes_per_round"] = max(steady) if steady else None
    total_incentive = sum(r.incentive for r in rows) or 1.0
    summary["honest_incentive_share"] = sum(r.incentive for r in rows if r.behaviour == "honest") / total_incentive
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_loss(out / "heldout_loss.png", initial, summary["rounds"])
    plot_emissions(out / "emissions.png", rows)
    if use_wandb:
        log_to_wandb(out, summary, rows)
    return summary


def plot_loss(path: Path, initial: float | None, rounds: list[dict]) -> None:
    xs = [r["round"] for r in rounds]
    ys = [r["heldout_loss"] for r in rounds]
    if initial is not None and xs:
        xs, ys = [xs[0] - 1] + xs, [initial] + ys
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, ys, marker="o")
    ax.set_xlabel("round")
    ax.set_ylabel("held-out loss (global model)")
    ax.set_title("Global model held-out loss per round")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_emissions(path: Path, rows: list[MinerRow]) -> None:
    colours = {"honest": "tab:green", "zero": "tab:red", "copy": "tab:orange"}
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    labels = [f"uid {r.uid}\n{r.behaviour}" for r in rows]
    for ax, field, title in ((axes[0], "incentive", "incentive (chain)"), (axes[1], "emission", "emission, alpha")):
        ax.bar(labels, [getattr(r, field) for r in rows], color=[colours.get(r.behaviour, "grey") for r in rows])
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Miners after the last epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def log_to_wandb(out: Path, summary: dict, rows: list[MinerRow]) -> None:
    run = open_run(False, "deai-subnet", "", "local-subnet-summary", "local", {"out": str(out)}, out / "wandb")
    for r in summary["rounds"]:
        run.log({"heldout_loss": r["heldout_loss"], "accepted": r["accepted"]}, step=r["round"])
    if run.enabled:
        import wandb

        table = wandb.Table(columns=["uid", "behaviour", "mean_score", "incentive", "emission"],
                            data=[[r.uid, r.behaviour, r.mean_score, r.incentive, r.emission] for r in rows])
        run.log({"miners": table, "loss_plot": wandb.Image(str(out / "heldout_loss.png")),
                 "emissions_plot": wandb.Image(str(out / "emissions.png"))})
    run.finish()


def render_summary(console: Console, summary: dict) -> None:
    miners = Table(title="Miners (incentive and emission read from the chain after the last epoch)")
    for col in ("uid", "behaviour", "mean score", "accepted rounds", "incentive", "emission (alpha)",
                "time training", "synced bytes/round"):
        miners.add_column(col, justify="right")
    for m in summary["miners"]:
        fraction, synced = m.get("train_fraction"), m.get("sync_bytes_per_round")
        miners.add_row(str(m["uid"]), m["behaviour"], f"{m['mean_score']:.4f}", str(m["rounds_accepted"]),
                       f"{m['incentive']:.4f}", f"{m['emission']:.4f}",
                       "" if fraction is None else f"{fraction:.1%}", "" if synced is None else f"{synced:,.0f}")
    console.print(miners)
    losses = Table(title="Global model held-out loss")
    losses.add_column("round", justify="right")
    losses.add_column("held-out loss", justify="right")
    losses.add_column("accepted", justify="right")
    if summary["initial_heldout_loss"] is not None:
        losses.add_row("start", f"{summary['initial_heldout_loss']:.4f}", "")
    for r in summary["rounds"]:
        losses.add_row(str(r["round"]), f"{r['heldout_loss']:.4f}", str(r["accepted"]))
    console.print(losses)
    initial, rounds = summary["initial_heldout_loss"], summary["rounds"]
    if initial and rounds:
        drop = 1 - rounds[-1]["heldout_loss"] / initial
        console.print(f"held-out loss {initial:.4f} -> {rounds[-1]['heldout_loss']:.4f} ({drop:.1%} lower); "
                      f"honest miners' share of incentive {summary['honest_incentive_share']:.1%}; "
                      f"{summary['seconds']:.0f}s")
    synced, size = summary.get("sync_bytes_per_round"), summary.get("checkpoint_bytes")
    if synced is not None and size:
        console.print(f"honest miners trained {summary['train_fraction_min']:.1%} of their time or more; they "
                      f"fetched at most {synced:,.0f} bytes a round for the next base ({synced / size:.1%} of the "
                      f"{size:,}-byte checkpoint)")
