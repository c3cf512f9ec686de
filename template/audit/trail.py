"""Whether a validator's audit trail is whole: every record digest its hotkey committed on chain
is in its `rounds.jsonl`, the records form one line of checkpoints (each round starts from the
checkpoint the previous one produced: no fork), and every recorded round replays to its
checkpoint from the archived contributions.

    python -m template.audit.trail --state-dir ~/.deai/validator --committed chain_commitments.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from template.audit.replay import ReplayError, add_model_arguments, archive_dir, model_of, replay
from template.audit.round_record import RoundRecord, read_records
from template.training.checkpoint import CheckpointError, load_checkpoint
from template.training.model import ModelPreset

REPRODUCED = "REPRODUCED"


@dataclass
class Fork:
    round_index: int
    base_checkpoint: str
    previous_round: int
    previous_new_checkpoint: str


@dataclass
class TrailReport:
    rounds: list[int]  # round indices with a record, in file order
    committed: int  # distinct digests the hotkey committed
    committed_without_record: list[str] = field(default_factory=list)
    records_not_committed: list[int] = field(default_factory=list)  # a figure, not a fault
    recorded_twice: list[int] = field(default_factory=list)
    forks: list[Fork] = field(default_factory=list)
    replays: dict[int, str] = field(default_factory=dict)  # round -> REPRODUCED or why not

    @property
    def missing_rounds(self) -> list[int]:
        """Round indices between the first and the last record that have none."""
        if not self.rounds:
            return []
        held = set(self.rounds)
        return [r for r in range(min(held), max(held) + 1) if r not in held]

    @property
    def not_reproduced(self) -> dict[int, str]:
        return {r: why for r, why in self.replays.items() if why != REPRODUCED}

    @property
    def whole(self) -> bool:
        return not (self.committed_without_record or self.recorded_twice or self.forks or self.not_reproduced)

    def to_dict(self) -> dict:
        return {**asdict(self), "missing_rounds": self.missing_rounds, "whole": self.whole}


def forks_in(records: list[RoundRecord]) -> list[Fork]:
    """Records applied to another checkpoint than the one the previous record produced."""
    return [Fork(r.round_index, r.applied_checkpoint, prev.round_index, prev.new_checkpoint)
            for prev, r in zip(records, records[1:]) if r.applied_checkpoint != prev.new_checkpoint]


def replay_round(record: RoundRecord, checkpoints: Path, archive: Path, preset: ModelPreset | str, vocab_size: int) -> str:
    """REPRODUCED, or why the round does not replay to its recorded checkpoint."""
    base_path = checkpoints / f"{record.applied_checkpoint}.safetensors"
    try:
        base = load_checkpoint(base_path)
    except (CheckpointError, OSError) as exc:
        return f"checkpoint {record.applied_checkpoint[:12]} (the round was applied to it) does not load: {exc}"
    bodies = {p.stem: p.read_bytes() for p in archive.glob("*.safetensors")} if archive.exists() else {}
    try:
        got = replay(record, base, bodies, preset, vocab_size)
    except ReplayError as exc:
        return f"cannot replay: {exc}"
    return REPRODUCED if got == record.new_checkpoint else f"MISMATCH: replay gives {got[:16]}"


def check_trail(state_dir: Path, committed: set[str], preset: ModelPreset | str, vocab_size: int,
                archives: Path | None = None) -> TrailReport:
    """Check `state_dir`'s records against the digests its hotkey committed. `archives` holds
    `round-R/` folders of merged contributions (default: the validator's own archive, which
    keeps only its most recent rounds)."""
    records = read_records(state_dir / "rounds.jsonl")
    digests = {r.digest(): r for r in records}
    indices = [r.round_index for r in records]
    report = TrailReport(rounds=indices, committed=len(committed))
    report.committed_without_record = sorted(d for d in committed if d not in digests)
    report.records_not_committed = [r.round_index for r in records if r.digest() not in committed]
    report.recorded_twice = sorted({i for i in indices if indices.count(i) > 1})
    report.forks = forks_in(records)
    for record in records:
        archive = (archives / f"round-{record.round_index}") if archives else archive_dir(state_dir, record.round_index)
        report.replays[record.round_index] = replay_round(record, state_dir / "checkpoints", archive, preset,
                                                          vocab_size)
    return report


def read_committed(path: Path) -> set[str]:
    """Digests from a JSON-lines log of a hotkey's on-chain commitments ({"digests": [...]} a line)."""
    found: set[str] = set()
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                found.update(json.loads(line).get("digests", []))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check that a validator's audit trail is whole")
    parser.add_argument("--state-dir", required=True, help="the validator's --neuron.state_dir")
    parser.add_argument("--committed", required=True, help="JSON lines of the digests its hotkey committed on chain")
    parser.add_argument("--archives", default="", help="round-R/ folders of contributions (default: the state dir's)")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    report = check_trail(Path(args.state_dir).expanduser(), read_committed(Path(args.committed)), *model_of(args),
                         Path(args.archives) if args.archives else None)
    print(json.dumps(report.to_dict(), indent=1))
    return 0 if report.whole else 1


if __name__ == "__main__":
    sys.exit(main())
