"""Score EMA per hotkey across rounds, and the weights it yields.

Each round every hotkey in the round's plan is updated: with its round score when it was scored,
with 0 when it was absent or failed, so freeloaders decay toward 0. A hotkey that earns nothing
for `max_missed` consecutive rounds is reset to 0. A hotkey seen on a different uid than
before (deregistered and registered again) starts a fresh EMA, and a hotkey that leaves the plan
loses its EMA. `to_json`/`from_json` carry the whole state across a restart.

Each hotkey also keeps an originality record: the log-odds that it trains its assignment, from
the rounds it committed to an update in (paid: a pass; paid nothing: a fail, withheld bytes
included). An update that does not carry its assigned pages still passes the assignment test by
chance in about one round in ten; one that does passes in about 94 of 100. A round's pay enters
the EMA in full while the record favours assignment-following (odds >= 1) and scaled by twice
its probability below that, so a chance pass amid failures earns almost nothing, and one refused
honest round costs a miner with a good record nothing. The record is bounded at three passes'
evidence either way, so a miner that mends its ways is paid in full again from its third pass.
A record below even odds outlives the hotkey's absence from the plan and a new uid, so leaving
for a round does not wipe it (docs/scoring.md, "Originality record").
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass, fields
from typing import Mapping


@dataclass
class ScoreEntry:
    uid: int
    ema: float = 0.0
    missed: int = 0  # consecutive rounds with no positive score (absent or failed)


# The staged assignment test's pass rates (tests/test_assignment_stages.py, 3,000 draws each): an
# update with the margin honest updates show in the first rounds, and one with no margin at all.
HONEST_PASS_RATE = 0.939
CHANCE_PASS_RATE = 0.105
PASS_EVIDENCE = math.log(HONEST_PASS_RATE / CHANCE_PASS_RATE)
FAIL_EVIDENCE = math.log((1 - HONEST_PASS_RATE) / (1 - CHANCE_PASS_RATE))
RECORD_BOUND = 3 * PASS_EVIDENCE  # three passes' worth either way
MAX_ABSENT_RECORDS = 4096  # records kept for hotkeys outside the plan (the most negative first)


def record_factor(record: float) -> float:
    """What share of a round's pay a record lets through: 1 at even odds or better, else
    twice the probability the record gives."""
    if record >= -1e-9:  # even odds, give or take the rounding of a sum of steps
        return 1.0
    return 2.0 / (1.0 + math.exp(-record))


class ScoreBook:
    def __init__(self, alpha: float = 0.3, max_missed: int = 3):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha  # weight of the newest round; 0.3 suits short runs, ~0.1 long ones
        self.max_missed = max_missed  # consecutive rounds without a positive score before reset
        self.rounds = 0
        self.entries: dict[str, ScoreEntry] = {}
        self.records: dict[str, float] = {}  # hotkey -> originality record (absent: 0, even odds)

    def update(self, round_scores: Mapping[str, float], uids_by_hotkey: Mapping[str, int],
               unrecorded: Collection[str] = ()) -> None:
        """Fold one round into the EMA.

        `round_scores`: hotkey -> score for the contributions scored this round (0 for failed).
        `uids_by_hotkey`: the round's plan (registered miners serving an axon); those missing
        from round_scores were absent. Scores of hotkeys outside it are ignored.
        `unrecorded`: scored hotkeys whose round leaves their originality record alone (they
        committed to nothing, so nothing they could choose after seeing the eval seed).
        """
        for hotkey in list(self.entries):
            if hotkey not in uids_by_hotkey:
                del self.entries[hotkey]
        for hotkey, uid in uids_by_hotkey.items():
            entry = self.entries.get(hotkey)
            if entry is None or entry.uid != uid:
                entry = self.entries[hotkey] = ScoreEntry(uid=uid)
            score = max(0.0, float(round_scores.get(hotkey, 0.0)))
            if hotkey in round_scores and hotkey not in unrecorded:
                step = PASS_EVIDENCE if score > 0 else FAIL_EVIDENCE
                record = max(-RECORD_BOUND, min(RECORD_BOUND, self.records.get(hotkey, 0.0) + step))
                self.records[hotkey] = record
                score *= record_factor(record)
            entry.ema = (1.0 - self.alpha) * entry.ema + self.alpha * score
            entry.missed = 0 if score > 0 else entry.missed + 1
            if entry.missed >= self.max_missed:
                entry.ema = 0.0
        self._forget_records(uids_by_hotkey)
        self.rounds += 1

    def _forget_records(self, present: Mapping[str, int]) -> None:
        """Drop the records of hotkeys outside the plan that hold even odds or better (they
        come back at even odds, still paid in full); keep the worse ones, the most
        negative first, up to `MAX_ABSENT_RECORDS`."""
        absent = sorted((r, hk) for hk, r in self.records.items() if hk not in present)
        for rank, (record, hotkey) in enumerate(absent):
            if record >= 0 or rank >= MAX_ABSENT_RECORDS:
                del self.records[hotkey]

    def ema(self, hotkey: str) -> float:
        entry = self.entries.get(hotkey)
        return entry.ema if entry else 0.0

    def record(self, hotkey: str) -> float:
        return self.records.get(hotkey, 0.0)

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
                "records": dict(sorted(self.records.items())),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "ScoreBook":
        data = json.loads(text)
        book = cls(alpha=data["alpha"], max_missed=data["max_missed"])
        book.rounds = data["rounds"]
        known = {f.name for f in fields(ScoreEntry)}
        book.entries = {h: ScoreEntry(**{k: v for k, v in e.items() if k in known}) for h, e in data["entries"].items()}
        book.records = {str(h): float(r) for h, r in data.get("records", {}).items()}
        return book
