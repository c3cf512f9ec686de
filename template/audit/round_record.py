"""Round records: what a round decided, hashed so the hash can be committed on chain and anyone
holding the record (and the contributions it names) can replay and check it."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from protocol.recipe import Recipe


@dataclass
class RoundRecord:
    netuid: int
    round_index: int
    start_block: int
    seed: str
    eval_block: int
    base_checkpoint: str
    new_checkpoint: str
    recipe: dict = field(default_factory=dict)  # the round's Recipe (protocol.recipe), as sent to the miners
    assignments: dict[str, list[int]] = field(default_factory=dict)  # hotkey -> page ids
    units: dict[str, str] = field(default_factory=dict)  # hotkey -> unit of work ("full", "width-1/4")
    coldkeys: dict[str, str] = field(default_factory=dict)  # hotkey -> coldkey (the merge caps each at 1/3)
    contributions: dict[str, str] = field(default_factory=dict)  # hotkey -> sha256 of the bytes received
    accepted: list[str] = field(default_factory=list)  # in aggregation order
    scores: dict[str, float] = field(default_factory=dict)
    heldout_loss_before: float | None = None
    heldout_loss_after: float | None = None

    @property
    def training_recipe(self) -> Recipe:
        return Recipe.model_validate(self.recipe)

    def canonical_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def append_record(path: Path, record: RoundRecord) -> str:
    """Append the record as one JSON line; returns its digest (what goes on chain)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(record.canonical_json() + "\n")
    return record.digest()


def read_records(path: Path) -> list[RoundRecord]:
    if not path.exists():
        return []
    return [RoundRecord(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
