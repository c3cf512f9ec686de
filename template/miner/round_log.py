"""One row per round of what this miner did, for its operator's wandb and /metrics.

The HTTP threads record work orders taken or refused (with the reason), the training thread what
it trained (steps, loss, tokens/s) or made otherwise (a freeloader's zero or copied update), and
whether a commitment was made. The main loop closes a round once the chain has moved past it: the
row is logged then, also for a round with nothing in it (idle), so the history has every round.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from loguru import logger

from template.net.monitoring import Monitoring
from template.utils.wandb_run import WandbRun

MAX_REASON_CHARS = 200
ROUND_AHEAD = 2  # an order for a round up to this far ahead keeps its round; others count as the current one
MAX_IDLE_ROWS = 64  # idle rows logged at once after a long gap


@dataclass
class RoundRow:
    round: int
    outcome: str = "idle"  # idle | trained | zero | copied | failed
    orders_accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # HTTP status -> count
    last_refusal: str = ""
    inner_steps: int = 0
    loss_first: float | None = None
    loss_last: float | None = None
    tokens_per_second: float | None = None
    train_seconds: float | None = None
    committed: bool = False
    contribution_bytes: int = 0
    failure: str = ""

    def metrics(self) -> dict:
        row = {"outcome": self.outcome, "orders_accepted": self.orders_accepted,
               "orders_refused": sum(self.refused.values()), "committed": int(self.committed),
               "contribution_bytes": self.contribution_bytes, "inner_steps": self.inner_steps}
        row.update({f"orders_refused/{status}": count for status, count in self.refused.items()})
        for name in ("loss_first", "loss_last", "tokens_per_second", "train_seconds"):
            if getattr(self, name) is not None:
                row[name] = getattr(self, name)
        if self.last_refusal:
            row["last_refusal"] = self.last_refusal
        if self.failure:
            row["failure"] = self.failure
        return row


class MinerMetrics:
    def __init__(self, monitoring: Monitoring):
        self.monitoring = monitoring
        self.rounds = monitoring.counter("deai_miner_rounds", "rounds closed, by outcome", ("outcome",))
        self.orders_accepted = monitoring.counter("deai_miner_orders_accepted", "work orders taken")
        self.orders_refused = monitoring.counter("deai_miner_orders_refused", "work orders refused, by HTTP status",
                                                 ("status",))
        self.commitments = monitoring.counter("deai_miner_commitments", "contributions committed before a deadline")
        self.loss = monitoring.gauge("deai_miner_inner_loss_last", "inner loss at the end of the last training")
        self.tokens_per_second = monitoring.gauge("deai_miner_tokens_per_second", "training throughput, last round")
        self.train_seconds = monitoring.gauge("deai_miner_train_seconds", "seconds of the last round's work")

    def observe(self, row: RoundRow) -> None:
        self.rounds.labels(outcome=row.outcome).inc()
        if row.loss_last is not None:
            self.loss.set(row.loss_last)
        if row.tokens_per_second is not None:
            self.tokens_per_second.set(row.tokens_per_second)
        if row.train_seconds is not None:
            self.train_seconds.set(row.train_seconds)
        if row.outcome != "idle":
            self.monitoring.round_done(row.round)


class RoundLog:
    """Thread-safe record of the rounds still open; `close_before` logs the finished ones."""

    def __init__(self, current: int, behaviour: str, run: WandbRun | None = None,
                 metrics: MinerMetrics | None = None):
        """`current`: the chain's round when the miner starts (the first row)."""
        self.behaviour = behaviour
        self.run = run or WandbRun()
        self.metrics = metrics
        self.rows: dict[int, RoundRow] = {}
        self.current = current  # the chain's round, as the main loop last saw it
        self.lock = threading.Lock()

    def _row(self, round_index: int | None) -> RoundRow:
        """The open row of `round_index`. A round already closed, far ahead or unknown (a bogus
        order) counts as the current one: rows are logged in order and stay few."""
        if round_index is None or not self.current <= round_index <= self.current + ROUND_AHEAD:
            round_index = self.current
        return self.rows.setdefault(round_index, RoundRow(round_index))

    def order_accepted(self, round_index: int) -> None:
        with self.lock:
            self._row(round_index).orders_accepted += 1
        if self.metrics is not None:
            self.metrics.orders_accepted.inc()

    def order_refused(self, round_index: int | None, status: int, reason: str) -> None:
        with self.lock:
            row = self._row(round_index)
            row.refused[str(status)] = row.refused.get(str(status), 0) + 1
            row.last_refusal = f"{status} {reason}"[:MAX_REASON_CHARS]
        if self.metrics is not None:
            self.metrics.orders_refused.labels(status=str(status)).inc()

    def made(self, round_index: int, outcome: str, stats=None) -> None:
        """The round's update was made: trained (with its InnerStats), zero or copied."""
        with self.lock:
            row = self._row(round_index)
            row.outcome = outcome
            if stats is not None:
                row.inner_steps, row.loss_first, row.loss_last = stats.steps, stats.loss_first, stats.loss_last
                row.tokens_per_second, row.train_seconds = stats.tokens_per_second, stats.seconds

    def committed(self, round_index: int, size: int) -> None:
        with self.lock:
            row = self._row(round_index)
            row.committed, row.contribution_bytes = True, size
        if self.metrics is not None:
            self.metrics.commitments.inc()

    def failed(self, round_index: int, reason: str) -> None:
        with self.lock:
            row = self._row(round_index)
            row.outcome, row.failure = "failed", reason[:MAX_REASON_CHARS]

    def close_before(self, current: int) -> list[RoundRow]:
        """Log every round from the last current one up to `current` (idle ones too, at most
        MAX_IDLE_ROWS of them after a long gap)."""
        with self.lock:
            if current <= self.current:
                return []
            due = set(range(max(self.current, current - MAX_IDLE_ROWS), current))
            due |= {r for r in self.rows if r < current}
            closing = [self.rows.pop(r, None) or RoundRow(r) for r in sorted(due)]
            self.current = current
        for row in closing:
            self.run.log({**row.metrics(), "behaviour": self.behaviour}, step=row.round)
            if self.metrics is not None:
                self.metrics.observe(row)
            trained = (f" | {row.inner_steps} steps, loss {row.loss_first:.3f} -> {row.loss_last:.3f}, "
                       f"{row.tokens_per_second:.0f} tok/s" if row.loss_last is not None else "")
            logger.info("round {} | {} | orders {} taken, {} refused{} | committed {}{}", row.round, row.outcome,
                        row.orders_accepted, sum(row.refused.values()),
                        f" (last: {row.last_refusal})" if row.last_refusal else "",
                        "yes" if row.committed else "no", trained)
        return closing
