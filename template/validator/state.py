"""What a validator keeps on disk between rounds: its state file and checkpoints by hash."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from loguru import logger

from template.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, state_hash
from template.utils.files import write_text_atomically


@dataclass
class ValidatorState:
    last_round: int = -1
    checkpoint: str = ""
    checkpoint_round: int = -1  # the last round folded into `checkpoint` (announced; elects the lead)
    last_weights_block: int = 0
    scores_json: str = ""
    heldout_history: list[dict] = field(default_factory=list)
    # A settled round whose record may not be in rounds.jsonl (or on chain) yet: saved with the
    # state before the record is appended, so a crash between the two never drops the round.
    pending_record: str = ""
    pending_commit: bool = False
    open_round: str = ""  # the plan of the round collecting commitments (`RoundPlan.to_json`), resumed after a restart
    settling_round: str = ""  # the round handed to settlement (`OpenedRound.to_json`), settled after a restart
    last_opened: int = -1  # the last round whose commitments this validator collected
    round_bases: dict[str, list] = field(default_factory=dict)  # round -> [base checkpoint, its round] (a lead's)
    head_outer_lr: float = 0.0  # the outer lr of the step that made `checkpoint` (0: not known, the recipe's)

    @classmethod
    def load(cls, path: Path) -> "ValidatorState | None":
        """The saved state; a fresh one when there is none; None when the file is corrupt (it is
        moved aside and the caller rebuilds the state from the records)."""
        if not path.exists():
            return cls()
        try:
            fields = json.loads(path.read_text())
            fields.setdefault("checkpoint_round", fields.get("last_round", -1))  # state of an older version
            return cls(**fields)
        except (ValueError, TypeError, AttributeError) as exc:
            backup = path.with_suffix(".corrupt")
            path.replace(backup)
            logger.error("state file {} is unreadable ({}); moved to {}; rebuilding from the round records",
                         path, exc, backup)
            return None

    def save(self, path: Path) -> None:
        write_text_atomically(path, json.dumps(asdict(self), indent=1))


class CheckpointStore:
    """Checkpoints named by their content hash (`<sha256>.safetensors`)."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.directory / f"{digest}.safetensors"

    def has(self, digest: str) -> bool:
        return bool(digest) and self.path(digest).exists()

    def load(self, digest: str) -> dict[str, torch.Tensor]:
        """The checkpoint, checked against its name (CheckpointError when it is not intact)."""
        state = load_checkpoint(self.path(digest))
        if state_hash(state) != digest:
            raise CheckpointError(f"{self.path(digest)} does not hash to its name")
        return state

    def set_aside(self, digest: str) -> None:
        if self.has(digest):
            self.path(digest).replace(self.path(digest).with_suffix(".corrupt"))

    def save(self, state: dict[str, torch.Tensor]) -> str:
        digest = state_hash(state)
        if not self.has(digest):
            save_checkpoint(self.path(digest), state)
        return digest
