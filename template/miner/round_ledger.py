"""What the miner did each round, as it measured it: when the order came, how the base was
synced and at what cost in bytes, how long it trained, when it committed. One JSON line a round
(`miner_rounds.jsonl` in its state dir): the share of its time spent training and the bytes it
downloads per round are read from here."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class RoundEntry:
    round_index: int
    received: float  # time.time() when the order was accepted
    started: float  # when the worker took it up
    sync: str = ""  # held | replayed | downloaded
    sync_bytes: int = 0
    steps: int = 0
    train_seconds: float = 0.0  # inside the inner loop
    trained_until: float = 0.0
    committed: float = 0.0


class RoundLedger:
    def __init__(self, path: Path):
        self.path = path

    def append(self, entry: RoundEntry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(asdict(entry)) + "\n")


def read_ledger(path: Path) -> list[RoundEntry]:
    """The entries that parse (a line cut by a crash is skipped)."""
    entries = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                entries.append(RoundEntry(**json.loads(line)))
            except (ValueError, TypeError):
                continue
    return entries


def train_fraction(entries: list[RoundEntry]) -> float | None:
    """The share of the wall time from its first round's order to its last commitment that the
    miner spent in its inner loop."""
    done = [e for e in entries if e.committed > 0]
    if not done:
        return None
    span = max(e.committed for e in done) - min(e.received for e in done)
    return sum(e.train_seconds for e in done) / span if span > 0 else None
