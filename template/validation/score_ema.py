"""Score EMA per hotkey across rounds, and the weights it yields.

Each round every registered hotkey is updated: with its round score when it was scored, with 0
when it was absent or failed, so freeloaders decay toward 0. A hotkey that earns nothing
for `max_missed` consecutive rounds is reset to 0. A hotkey seen on a different uid than
before (deregistered and registered again) starts fresh, and a hotkey that leaves the
metagraph is forgotten. `to_json`/`from_json` carry the whole state across a restart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Mapping


@dataclass
class ScoreEntry:
    uid: int
    ema: float = 0.0
    missed: int = 0  # consecutive rounds with no positive score (absent or failed)


class ScoreBook:
    def __init__(self, alpha: float = 0.3, max_missed: int = 3):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha  # weight of the newest round; 0.3 suits short runs, ~0.1 long ones
        self.max_missed = max_missed  # consecutive rounds without a positive score before reset
        self.rounds = 0
        self.entries: dict[str, ScoreEntry] = {}

    def update(self, round_scores: Mapping[str, float], uids_by_hotkey: Mapping[str, int]) -> None:
        """Fold one round into the EMA.

        `round_scores`: hotkey -> score for the contributions scored this round (0 for failed).
        `uids_by_hotkey`: the metagraph now; registered hotkeys missing from round_scores were
        absent. Scores of hotkeys no longer registered are ignored.
        """
        for hotkey in list(self.entries):
            if hotkey not in uids_by_hotkey:
                del self.entries[hotkey]
        for hotkey, uid in uids_by_hotkey.items():
            entry = self.entries.get(hotkey)
            if entry is None or entry.uid != uid:
                entry = self.entries[hotkey] = ScoreEntry(uid=uid)
            score = max(0.0, float(round_scores.get(hotkey, 0.0)))
            entry.ema = (1.0 - self.alpha) * entry.ema + self.alpha * score
            entry.missed = 0 if score > 0 else entry.missed + 1
            if entry.missed >= self.max_missed:
                entry.ema = 0.0
        self.rounds += 1

    def ema(self, hotkey: str) -> float:
        entry = self.entries.get(hotkey)
        return entry.ema if entry else 0.0

    def weights(self, uids_by_hotkey: Mapping[str, int]) -> dict[int, float]:
        """uid -> weight proportional to the EMA, summing to 1; empty when every EMA is 0.
        An entry recorded under another uid than the hotkey's current one counts as 0."""
        raw: dict[int, float] = {}
        for hotkey, uid in uids_by_hotkey.items():
            entry = self.entries.get(hotkey)
            if entry is not None and entry.uid == uid and entry.ema > 0:
                raw[uid] = raw.get(uid, 0.0) + entry.ema
        total = sum(raw.values())
        if total <= 0:
            return {}
        return {uid: value / total for uid, value in sorted(raw.items())}

    def to_json(self) -> str:
        return json.dumps(
            {
                "alpha": self.alpha,
                "max_missed": self.max_missed,
                "rounds": self.rounds,
                "entries": {h: asdict(e) for h, e in sorted(self.entries.items())},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "ScoreBook":
        data = json.loads(text)
        book = cls(alpha=data["alpha"], max_missed=data["max_missed"])
        book.rounds = data["rounds"]
        book.entries = {h: ScoreEntry(**e) for h, e in data["entries"].items()}
        return book
