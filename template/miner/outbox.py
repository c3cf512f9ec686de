"""Finished contributions on disk, so a restart loses nothing: each round's bytes beside the
signed commitment to them that validators get before the deadline."""
from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from protocol.messages import ContributionCommitment


class Outbox:
    """`round-R.safetensors` plus `round-R.commit` (its `ContributionCommitment`, as JSON)."""

    def __init__(self, directory: Path, keep_rounds: int = 8):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep_rounds = keep_rounds

    def path(self, round_index: int) -> Path:
        return self.directory / f"round-{round_index}.safetensors"

    def put(self, round_index: int, body: bytes, commitment: ContributionCommitment) -> None:
        tmp = self.path(round_index).with_suffix(".tmp")
        tmp.write_bytes(body)
        self.path(round_index).with_suffix(".commit").write_text(commitment.model_dump_json())
        tmp.replace(self.path(round_index))  # body last: its presence means complete
        for old in self.rounds()[:-self.keep_rounds]:
            self.remove(old)

    def remove(self, round_index: int) -> None:
        self.path(round_index).unlink(missing_ok=True)
        self.path(round_index).with_suffix(".commit").unlink(missing_ok=True)

    def rounds(self) -> list[int]:
        """Round indices held, oldest first (by number: round-10 is newer than round-9)."""
        held = []
        for path in self.directory.glob("round-*.safetensors"):
            index = path.name[len("round-"):-len(".safetensors")]
            if index.isdigit():
                held.append(int(index))
        return sorted(held)

    def body(self, round_index: int) -> bytes | None:
        path = self.path(round_index)
        return path.read_bytes() if path.exists() else None

    def commitment(self, round_index: int) -> ContributionCommitment | None:
        """The round's commitment; None while its bytes are not complete (or the file is damaged)."""
        if not self.path(round_index).exists():
            return None
        try:
            return ContributionCommitment.model_validate_json(self.path(round_index).with_suffix(".commit").read_text())
        except (OSError, ValidationError):
            return None

    def has(self, round_index: int) -> bool:
        """Whether the round's work is complete on disk (cheap: long-polls ask it every 50 ms)."""
        path = self.path(round_index)
        return path.exists() and path.with_suffix(".commit").exists()
