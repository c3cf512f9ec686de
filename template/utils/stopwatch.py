"""Where a round's time went: named phases timed back to back."""
from __future__ import annotations

import time


class Stopwatch:
    def __init__(self) -> None:
        self.started = self.last = time.monotonic()
        self.phases: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        """End `phase` now (its time is from the previous lap)."""
        now = time.monotonic()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last
        self.last = now

    @property
    def total(self) -> float:
        return time.monotonic() - self.started

    def summary(self) -> str:
        return ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.phases.items())
