"""What a validator tells its operator about a round: the wandb row (score decomposition per uid,
the weights set on chain, the timing breakdown, the chain block), the weights' log line, and the
Prometheus figures behind /metrics."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from template.net.monitoring import Monitoring
from template.validation.scoring import ScoreReport


@dataclass(frozen=True)
class WeightsSet:
    """The weight vector a validator set on chain (uid -> weight, summing to 1), and when."""
    block: int
    weights: dict[int, float]
    version_key: int
    submitted: bool = True  # False: --neuron.disable_set_weights, computed and logged only


def weights_line(weights: WeightsSet) -> str:
    """One log line with the whole vector, heaviest first."""
    head = (f"weights set on chain at block {weights.block} (version key {weights.version_key})" if weights.submitted
            else f"weights NOT set (--neuron.disable_set_weights) at block {weights.block}")
    entries = sorted(weights.weights.items(), key=lambda item: (-item[1], item[0]))
    return f"{head}: {len(entries)} uids: " + ", ".join(f"uid {uid} {value:.4f}" for uid, value in entries)


def report_metrics(reports: Mapping[str, ScoreReport]) -> dict[str, float]:
    """Each uid's score decomposition, keyed `<figure>/uid<N>` (wandb groups a figure's uids in
    one panel): score, pay, accepted, each check that ran (1 passed, 0 failed), held-out gain and its
    z, norm over the round's median, cosine with the update it duplicates, assignment z.
    Non-finite figures (a z over zero spread) are left out of the row."""
    row: dict[str, float] = {}
    for report in reports.values():
        uid = f"uid{report.uid}"
        row[f"score/{uid}"] = report.score
        row[f"pay/{uid}"] = report.pay
        row[f"accepted/{uid}"] = int(report.accepted)
        for check in report.checks:
            if check.passed is not None:
                row[f"check/{check.name}/{uid}"] = int(check.passed)
        if report.heldout is not None:
            row[f"gain/{uid}"] = report.heldout.mean
            row[f"gain_z/{uid}"] = report.heldout.z
        if report.norm is not None and report.median_norm:
            row[f"norm_ratio/{uid}"] = report.norm / report.median_norm
        if report.duplicate is not None:
            row[f"duplicate_cosine/{uid}"] = report.duplicate.cosine
        if report.assignment is not None:
            row[f"assignment_z/{uid}"] = report.assignment.z
    return {key: float(value) for key, value in row.items() if math.isfinite(value)}


def weights_metrics(weights: WeightsSet | None) -> dict[str, float]:
    if weights is None:
        return {}
    row = {f"weights/uid{uid}": value for uid, value in weights.weights.items()}
    row["weights_block"] = weights.block
    row["weights_submitted"] = int(weights.submitted)
    return row


class ValidatorMetrics:
    """The validator's Prometheus figures (one Grafana row per figure; uid labels are the last
    round's only, so the set stays bounded by the subnet's size)."""

    def __init__(self, monitoring: Monitoring):
        self.monitoring = monitoring
        self.rounds = monitoring.counter("deai_validator_rounds", "rounds this validator settled")
        self.accepted = monitoring.gauge("deai_validator_round_accepted", "contributions accepted in the last round")
        self.miners = monitoring.gauge("deai_validator_round_miners", "miners given work in the last round")
        self.heldout = monitoring.gauge("deai_validator_heldout_loss", "global model's held-out loss after the "
                                                                        "last round")
        self.seconds = monitoring.gauge("deai_validator_round_seconds", "seconds of the last round, by phase "
                                                                        "(total: the whole round)", ("phase",))
        self.score = monitoring.gauge("deai_validator_score", "each uid's score in the last round", ("uid",))
        self.ema = monitoring.gauge("deai_validator_score_ema", "each uid's score EMA", ("uid",))
        self.weight = monitoring.gauge("deai_validator_weight", "the last weights set on chain", ("uid",))
        self.check_failures = monitoring.counter("deai_validator_check_failures", "contributions failing each check",
                                                 ("check",))
        self.leading = monitoring.gauge("deai_validator_leading", "1 when this validator led the last round")
        self.lead_verified = monitoring.gauge("deai_validator_lead_verified", "following: 1 when the lead's last "
                                                                             "round replayed to its checkpoint")

    def observe_round(self, index: int, reports: Mapping[str, ScoreReport], heldout_loss: float,
                      phases: Mapping[str, float], total_seconds: float, ema: Callable[[str], float],
                      lead_verified: bool | None) -> None:
        self.rounds.inc()
        self.accepted.set(sum(r.accepted for r in reports.values()))
        self.miners.set(len(reports))
        self.heldout.set(heldout_loss)
        self.seconds.clear()
        for phase, seconds in {**phases, "total": total_seconds}.items():
            self.seconds.labels(phase=phase).set(seconds)
        self.score.clear()
        self.ema.clear()
        for report in reports.values():
            self.score.labels(uid=str(report.uid)).set(report.score)
            self.ema.labels(uid=str(report.uid)).set(ema(report.hotkey))
            failed = next((c.name for c in report.checks if c.passed is False), None)
            if failed is not None:
                self.check_failures.labels(check=failed).inc()
        self.leading.set(int(lead_verified is None))
        self.lead_verified.set(float("nan") if lead_verified is None else int(lead_verified))
        self.monitoring.round_done(index)

    def observe_weights(self, weights: WeightsSet) -> None:
        if not weights.submitted:
            return
        self.weight.clear()
        for uid, value in weights.weights.items():
            self.weight.labels(uid=str(uid)).set(value)
        self.monitoring.weights_set(weights.block)
