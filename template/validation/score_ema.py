"""Score EMA per hotkey across rounds, and the weights it yields.

Each round every registered hotkey is updated: with its round score when it was scored, with 0
when it was absent or failed, so freeloaders decay toward 0. A hotkey that earns nothing
for `max_missed` consecutive rounds is reset to 0. A hotkey seen on a different uid than
before (deregistered and registered again) starts fresh, and a hotkey that leaves the
metagraph is forgotten. `to_json`/`from_json` carry the whole state across a restart.

Each hotkey also keeps an originality record: the log-odds that it trains its assignment, from
the rounds it was scored in (paid: a pass; scored and paid nothing: a fail). An update that
does not carry its assigned pages still passes the assignment test by chance in about one round
in ten; one that does passes in about 19 of 20. A round's pay enters the EMA in full while the
record favours assignment-following (odds >= 1) and scaled by twice its probability below that,
so a chance pass amid failures earns almost nothing, and one refused honest round costs a
miner with a good record nothing. The record is bounded at a few rounds' evidence either way,
so a miner that mends its ways is paid in full again after a few passes (docs/scoring.md,
"Originality record").
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Mapping


@dataclass
class ScoreEntry:
    uid: int
    ema: float = 0.0
    missed: int = 0  # consecutive rounds with no positive score (absent or failed)
    record: float = 0.0  # log-odds that it trains its assignment (0: no evidence either way)


HONEST_PASS_RATE = 0.95  # an update trained on its pages passes the assignment test (tests/test_assignment_stages.py)
CHANCE_PASS_RATE = 0.105  # one that does not, passing by chance (same test)
PASS_EVIDENCE = math.log(HONEST_PASS_RATE / CHANCE_PASS_RATE)
FAIL_EVIDENCE = math.log((1 - HONEST_PASS_RATE) / (1 - CHANCE_PASS_RATE))
RECORD_BOUND = 3 * PASS_EVIDENCE  # three passes' worth either way


def record_factor(record: float) -> float:
    """What share of a round's pay a record lets through: 1 at even odds or better, else
    twice the probability the record gives."""
    return min(1.0, 2.0 / (1.0 + math.exp(-record)))


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
            if hotkey in round_scores:
                step = PASS_EVIDENCE if score > 0 else FAIL_EVIDENCE
                entry.record = max(-RECORD_BOUND, min(RECORD_BOUND, entry.record + step))
                score *= record_factor(entry.record)
            entry.ema = (1.0 - self.alpha) * entry.ema + self.alpha * score
            entry.missed = 0 if score > 0 else entry.missed + 1
            if entry.missed >= self.max_missed:
                entry.ema = 0.0
        self.rounds += 1

    def ema(self, hotkey: str) -> float:
        entry = self.entries.get(hotkey)
        return entry.ema if entry else 0.0

    def record(self, hotkey: str) -> float:
        entry = self.entries.get(hotkey)
        return entry.record if entry else 0.0

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
