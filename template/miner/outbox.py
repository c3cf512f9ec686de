"""Finished contributions on disk, so a restart loses nothing and any permitted validator can
fetch them."""
from __future__ import annotations

from pathlib import Path


class Outbox:
    """Finished contributions on disk: `round-R.safetensors` plus its hotkey signature."""

    def __init__(self, directory: Path, keep_rounds: int = 8):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep_rounds = keep_rounds

    def path(self, round_index: int) -> Path:
        return self.directory / f"round-{round_index}.safetensors"

    def put(self, round_index: int, body: bytes, signature: str) -> None:
        tmp = self.path(round_index).with_suffix(".tmp")
        tmp.write_bytes(body)
        self.path(round_index).with_suffix(".sig").write_text(signature)
        tmp.replace(self.path(round_index))  # body last: its presence means complete
        for old in self.rounds()[:-self.keep_rounds]:
            self.path(old).unlink(missing_ok=True)
            self.path(old).with_suffix(".sig").unlink(missing_ok=True)

    def rounds(self) -> list[int]:
        """Round indices held, oldest first (by number: round-10 is newer than round-9)."""
        held = []
        for path in self.directory.glob("round-*.safetensors"):
            index = path.name[len("round-"):-len(".safetensors")]
            if index.isdigit():
                held.append(int(index))
        return sorted(held)

    def get(self, round_index: int) -> tuple[bytes, str] | None:
        path = self.path(round_index)
        if not path.exists():
            return None
        return path.read_bytes(), path.with_suffix(".sig").read_text()
