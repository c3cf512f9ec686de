"""Replay a round from its record and the contributions it names: anyone holding them can check
that the lead's new checkpoint is exactly what the accepted updates produce.

    python -m template.audit.replay --state-dir ~/.deai/validator --round 12 [--preset tiny --vocab-size 1024]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch

from protocol.limits import MAX_CONTRIBUTION_BYTES
from protocol.messages import UnitOfWork
from protocol.payload import decode_tensors
from template.audit.round_record import RoundRecord, read_records
from template.validation.unit_merge import merge_units
from template.training.checkpoint import load_checkpoint, state_hash
from template.training.compression import CompressedUpdate, DecodedUpdate
from template.training.outer_step import apply_outer_step
from template.training.presets import PRESET_SETTINGS


class ReplayError(RuntimeError):
    pass


def archive_dir(state_dir: Path, round_index: int) -> Path:
    return state_dir / "archive" / f"round-{round_index}"


def replay(record: RoundRecord, base_state: dict[str, torch.Tensor], bodies: dict[str, bytes], preset: str,
           vocab_size: int) -> str:
    """The checkpoint hash the record's accepted contributions produce from `base_state`."""
    return state_hash(replayed_state(record, base_state, bodies, preset, vocab_size))


def replayed_state(record: RoundRecord, base_state: dict[str, torch.Tensor], bodies: dict[str, bytes], preset: str,
                   vocab_size: int) -> dict[str, torch.Tensor]:
    """The checkpoint the record's accepted contributions produce from `base_state`, merged and
    stepped with the record's own recipe."""
    recipe = record.training_recipe
    if state_hash(base_state) != record.base_checkpoint:
        raise ReplayError("base checkpoint does not match the record")
    shapes = {name: tuple(t.shape) for name, t in base_state.items()}
    deltas = {}
    for hotkey in record.accepted:
        body = bodies.get(hotkey)
        if body is None:
            raise ReplayError(f"no contribution from {hotkey[:10]} to replay")
        if hashlib.sha256(body).hexdigest() != record.contributions.get(hotkey):
            raise ReplayError(f"contribution from {hotkey[:10]} does not match the record's hash")
        tensors, _ = decode_tensors(body, MAX_CONTRIBUTION_BYTES)
        deltas[hotkey] = DecodedUpdate(CompressedUpdate.from_tensors(tensors, shapes, recipe.compression), shapes)
    units = {hk: UnitOfWork.from_label(record.units.get(hk, "full")) for hk in record.accepted}
    _, merged = merge_units(list(record.accepted), deltas, units, preset, vocab_size, coldkeys=record.coldkeys)
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
