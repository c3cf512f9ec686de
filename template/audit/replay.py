"""Replay a round from its record and the contributions it names: anyone holding them can check
that the lead's new checkpoint is exactly what the accepted updates produce.

    python -m template.audit.replay --state-dir ~/.deai/validator --round 12 [--preset tiny --vocab-size 1024]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from protocol.messages import UnitOfWork
from template.audit.round_record import RoundRecord, read_records
from template.training.checkpoint import load_checkpoint, state_hash
from template.training.compression import shapes_of
from template.training.outer_step import apply_outer_step
from template.training.presets import PRESET_SETTINGS
from template.validation.contribution import Expected, Rejected, open_contribution
from template.validation.unit_merge import merge_units


class ReplayError(RuntimeError):
    """The round does not replay; `missing` (hotkeys whose bytes are not here) and `rejected`
    (hotkey -> why its bytes do not open) say which contributions stopped it."""

    def __init__(self, message: str, missing: list[str] | None = None,
                 rejected: dict[str, Rejected] | None = None) -> None:
        super().__init__(message)
        self.missing = missing or []
        self.rejected = rejected or {}


def archive_dir(state_dir: Path, round_index: int) -> Path:
    return state_dir / "archive" / f"round-{round_index}"


def replay(record: RoundRecord, base_state: dict[str, torch.Tensor], bodies: dict[str, bytes], preset: str,
           vocab_size: int) -> str:
    """The checkpoint hash the record's accepted contributions produce from `base_state`."""
    return state_hash(replayed_state(record, base_state, bodies, preset, vocab_size))


def replayed_state(record: RoundRecord, base_state: dict[str, torch.Tensor], bodies: dict[str, bytes], preset: str,
                   vocab_size: int) -> dict[str, torch.Tensor]:
    """The checkpoint the record's accepted contributions produce from `base_state`, merged and
    stepped with the record's own recipe. Each contribution is opened as scoring opened it
    (`open_contribution`), and must be the bytes whose hash the record names."""
    recipe = record.training_recipe
    if state_hash(base_state) != record.base_checkpoint:
        raise ReplayError("base checkpoint does not match the record")
    accepted = list(record.accepted)
    missing = [hk for hk in accepted if bodies.get(hk) is None]
    if missing:
        raise ReplayError(f"no contribution from {len(missing)} of {len(accepted)} accepted miners to replay "
                          f"(first {missing[0][:10]})", missing=missing)
    unnamed = [hk for hk in accepted if not isinstance(record.contributions.get(hk), str)]
    if unnamed:
        raise ReplayError(f"the record names no hash for accepted {unnamed[0][:10]}")
    shapes = shapes_of(base_state)
    units = {hk: UnitOfWork.from_label(record.units.get(hk, "full")) for hk in accepted}
    deltas, rejected = {}, {}
    for hotkey in accepted:
        expected = Expected(hotkey, record.netuid, record.round_index, record.base_checkpoint, units[hotkey],
                            sha256=record.contributions[hotkey])
        try:
            deltas[hotkey] = open_contribution(bodies[hotkey], expected, shapes, recipe.compression)
        except Rejected as exc:
            rejected[hotkey] = exc
    if rejected:
        first = next(iter(rejected))
        raise ReplayError(f"{len(rejected)} of {len(accepted)} accepted contributions do not open (first "
                          f"{first[:10]}: {rejected[first].reason})", rejected=rejected)
    _, merged = merge_units(accepted, deltas, units, preset, vocab_size, coldkeys=record.coldkeys)
    return base_state if merged is None else apply_outer_step(base_state, merged, recipe.outer_lr)


def replay_from_state_dir(state_dir: Path, round_index: int, preset: str, vocab_size: int
                          ) -> tuple[RoundRecord, str]:
    records = [r for r in read_records(state_dir / "rounds.jsonl") if r.round_index == round_index]
    if not records:
        raise ReplayError(f"no record of round {round_index} in {state_dir}")
    record = records[-1]
    base_path = state_dir / "checkpoints" / f"{record.base_checkpoint}.safetensors"
    if not base_path.exists():
        raise ReplayError(f"base checkpoint {record.base_checkpoint[:12]} is not in {base_path.parent}")
    folder = archive_dir(state_dir, round_index)
    bodies = {p.stem: p.read_bytes() for p in folder.glob("*.safetensors")} if folder.exists() else {}
    return record, replay(record, load_checkpoint(base_path), bodies, preset, vocab_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay a validator's round and check its checkpoint hash")
    parser.add_argument("--state-dir", required=True, help="the lead validator's --neuron.state_dir")
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--vocab-size", type=int, default=0, help="0: the preset's")
    args = parser.parse_args(argv)
    try:
        record, got = replay_from_state_dir(Path(args.state_dir).expanduser(), args.round, args.preset,
                                            args.vocab_size or PRESET_SETTINGS[args.preset].vocab_size)
    except ReplayError as exc:
        print(f"cannot replay: {exc}", file=sys.stderr)
        return 2
    ok = got == record.new_checkpoint
    print(f"round {args.round}: record {record.digest()[:16]}, {len(record.accepted)} accepted, "
          f"checkpoint {record.new_checkpoint[:16]} {'REPRODUCED' if ok else 'MISMATCH: replay gives ' + got[:16]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
