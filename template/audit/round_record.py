"""Round records: what a round decided, hashed so the hash can be committed on chain and anyone
holding the record (and the contributions it names) can replay and check it."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loguru import logger

from protocol.recipe import Recipe


@dataclass
class RoundRecord:
    netuid: int
    round_index: int
    start_block: int
    seed: str
    eval_block: int
    base_checkpoint: str  # what the miners trained from and the contributions were scored against
    new_checkpoint: str
    recipe: dict = field(default_factory=dict)  # the round's Recipe (protocol.recipe), as sent to the miners
    assignments: dict[str, list[int]] = field(default_factory=dict)  # hotkey -> page ids
    units: dict[str, str] = field(default_factory=dict)  # hotkey -> unit of work ("full", "width-1/4")
    coldkeys: dict[str, str] = field(default_factory=dict)  # hotkey -> coldkey (the merge caps each at 1/3)
    contributions: dict[str, str] = field(default_factory=dict)  # hotkey -> sha256 of the bytes received
    accepted: list[str] = field(default_factory=list)  # in aggregation order
    weights: dict[str, float] = field(default_factory=dict)  # merge weight of an accepted one, if not 1 (collusion group shares)
    scores: dict[str, float] = field(default_factory=dict)
    heldout_loss_before: float | None = None
    heldout_loss_after: float | None = None
    # The checkpoint the merge was applied to: the head when the round settled. Rounds overlap
    # (miners train the next round while this one is scored), so it is the base moved by the
    # rounds settled since; empty: the base itself.
    applied_to: str = ""

    @property
    def applied_checkpoint(self) -> str:
        return self.applied_to or self.base_checkpoint

    @property
    def training_recipe(self) -> Recipe:
        return Recipe.model_validate(self.recipe)

    def canonical_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def append_record(path: Path, record: RoundRecord) -> str:
    """Append the record as one JSON line; returns its digest (what goes on chain). A half-written
    last line (a crash mid-append) is cut off first, so it is never glued to this record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab+") as handle:
        size = handle.seek(0, 2)
        if size:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                handle.seek(0)
                intact = handle.read().rfind(b"\n") + 1
                logger.error("{}: cut a half-written last record ({} bytes)", path, size - intact)
                handle.truncate(intact)
        handle.seek(0, 2)
        handle.write((record.canonical_json() + "\n").encode())
    return record.digest()


def scan_records(path: Path) -> tuple[list[tuple[int, RoundRecord]], list[tuple[int, str]]]:
    """(line number, record) for each line of the file that parses, and (line number, why) for
    each that does not; both empty when there is no file."""
    if not path.exists():
        return [], []
    records, broken = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, RoundRecord(**json.loads(line))))
        except (ValueError, TypeError) as exc:
            broken.append((number, str(exc)))
    return records, broken


def read_records(path: Path) -> list[RoundRecord]:
    """The records in the file; a line that does not parse (a crash mid-append) is skipped with
    an error naming the file and line."""
    records, broken = scan_records(path)
    for number, why in broken:
        logger.error("{} line {}: not a round record ({}); skipped", path, number, why)
    return [record for _, record in records]
