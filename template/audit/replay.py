"""Replay a round from its record and the contributions it names: anyone holding them can check
that the lead's new checkpoint is exactly what the accepted updates produce.

    python -m template.audit.replay --state-dir ~/.deai/validator --round 12 [--preset tiny --vocab-size 1024]

Exit status: 0 REPRODUCED; 1 MISMATCH (the record, its contributions and its base checkpoint are
all here and intact, and they do not give the recorded checkpoint); 2 cannot check (an input is
missing or damaged: the line printed names it; nothing is proven either way).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import traceback
from dataclasses import asdict
from pathlib import Path

import pydantic
import torch

from protocol.messages import UnitOfWork
from template.audit.round_record import RoundRecord, scan_records
from template.training.checkpoint import CheckpointError, load_checkpoint, state_hash
from template.training.compression import shapes_of
from template.training.outer_step import apply_outer_step
from template.training.presets import PRESET_SETTINGS
from template.training.model import ModelPreset
from template.training.pretrained import PretrainedSource, pretrained_architecture
from template.validation.contribution import HASH, METADATA, Expected, Rejected, open_contribution
from template.validation.unit_merge import merge_units

_RECORD = pydantic.TypeAdapter(RoundRecord)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ReplayError(RuntimeError):
    """The round does not replay; `missing` (hotkeys whose bytes are not here) and `rejected`
    (hotkey -> why its bytes do not open) say which contributions stopped it."""

    def __init__(self, message: str, missing: list[str] | None = None,
                 rejected: dict[str, Rejected] | None = None) -> None:
        super().__init__(message)
        self.missing = missing or []
        self.rejected = rejected or {}

    @property
    def disproves(self) -> bool:
        """Whether the record is shown wrong: bytes with the very hash it names for an accepted
        contribution do not open as scoring opens them."""
        return any(rejected.kind != HASH for rejected in self.rejected.values())


class CannotCheck(ReplayError):
    """An input of the replay is missing or damaged (the message names the file)."""


def archive_dir(state_dir: Path, round_index: int) -> Path:
    return state_dir / "archive" / f"round-{round_index}"


def replay(record: RoundRecord, applied_state: dict[str, torch.Tensor], bodies: dict[str, bytes],
           preset: ModelPreset | str, vocab_size: int) -> str:
    """The checkpoint hash the record's accepted contributions produce from `applied_state`."""
    return state_hash(replayed_state(record, applied_state, bodies, preset, vocab_size))


def replayed_state(record: RoundRecord, applied_state: dict[str, torch.Tensor], bodies: dict[str, bytes],
                   preset: ModelPreset | str, vocab_size: int) -> dict[str, torch.Tensor]:
    """The checkpoint the record's accepted contributions produce from `applied_state` (the
    state of `record.applied_checkpoint`), merged and stepped with the record's own recipe. Each
    contribution is opened as scoring opened it (`open_contribution`, against the round's base),
    and must be the bytes whose hash the record names."""
    recipe = record.training_recipe
    if state_hash(applied_state) != record.applied_checkpoint:
        raise ReplayError("the checkpoint to apply the round to does not match the record")
    base_state = applied_state
    accepted = list(record.accepted)
    missing = [hk for hk in accepted if bodies.get(hk) is None]
    if missing:
        raise ReplayError(f"no contribution from {len(missing)} of {len(accepted)} accepted miners to replay "
                          f"(first {missing[0][:10]})", missing=missing)
    unnamed = [hk for hk in accepted if not isinstance(record.contributions.get(hk), str)]
    if unnamed:
        raise ReplayError(f"the record names no hash for accepted {unnamed[0][:10]}")
    odd = [hk for hk, w in record.weights.items() if hk not in accepted or not 0.0 < float(w) <= 1.0]
    if odd:
        raise ReplayError(f"the record's merge weight for {odd[0][:10]} is not a share of an accepted contribution",
                          rejected={hk: Rejected(METADATA, "merge weight outside (0, 1]") for hk in odd})
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
    _, merged = merge_units(accepted, deltas, units, preset, vocab_size, coldkeys=record.coldkeys,
                            weights=record.weights)
    return base_state if merged is None else apply_outer_step(base_state, merged, recipe.outer_lr)


def replay_from_state_dir(state_dir: Path, round_index: int, preset: ModelPreset | str, vocab_size: int
                          ) -> tuple[RoundRecord, str]:
    """The round's record and the checkpoint hash its replay gives; CannotCheck naming the file
    when an input is missing or damaged, ReplayError when the record does not replay."""
    record = round_record(state_dir / "rounds.jsonl", round_index)
    base = applied_checkpoint(state_dir / "checkpoints", record)
    folder = archive_dir(state_dir, round_index)
    bodies = archived_contributions(folder, record)
    try:
        return record, replay(record, base, bodies, preset, vocab_size)
    except ReplayError as exc:
        accepted = len(record.accepted)
        if exc.missing:
            raise CannotCheck(f"{folder / exc.missing[0]}.safetensors is missing ({len(exc.missing)} of {accepted} "
                              "accepted contributions are not archived)", missing=exc.missing) from None
        damaged = [hk for hk, rejected in exc.rejected.items() if rejected.kind == HASH]
        if damaged and not exc.disproves:
            raise CannotCheck(f"{folder / damaged[0]}.safetensors is not the contribution the record names (its "
                              f"sha256 differs: damaged or replaced; {len(damaged)} of {accepted})",
                              rejected=exc.rejected) from None
        raise


def round_record(path: Path, round_index: int) -> RoundRecord:
    """The last intact, well-formed record of the round in `path`; CannotCheck otherwise."""
    if not path.exists():
        raise CannotCheck(f"{path} does not exist")
    records, broken = scan_records(path)
    found = [(number, record) for number, record in records if record.round_index == round_index]
    if not found:
        why = f" (line {broken[0][0]} and {len(broken) - 1} more do not parse)" if broken else ""
        raise CannotCheck(f"no record of round {round_index} in {path}{why}")
    number, record = found[-1]
    try:
        record = _RECORD.validate_python(asdict(record), strict=False)
        record.training_recipe  # noqa: B018 - validates the recipe
        for label in record.units.values():
            UnitOfWork.from_label(label)
        if not all(_SHA256.fullmatch(h) for h in (record.base_checkpoint, record.new_checkpoint,
                                                  record.applied_checkpoint)):
            raise ValueError("a checkpoint hash is not a sha256")
    except (ValueError, TypeError) as exc:
        raise CannotCheck(f"{path} line {number}: the record of round {round_index} is malformed "
                          f"({str(exc).splitlines()[0]})") from None
    return record


def applied_checkpoint(folder: Path, record: RoundRecord) -> dict[str, torch.Tensor]:
    """The checkpoint the record's merge was applied to, intact; CannotCheck naming the file."""
    path = folder / f"{record.applied_checkpoint}.safetensors"
    if not path.exists():
        raise CannotCheck(f"checkpoint {path} (the round was applied to it) is missing")
    try:
        state = load_checkpoint(path)
    except (CheckpointError, OSError) as exc:
        raise CannotCheck(f"checkpoint {path} (the round was applied to it) does not load ({exc})") from None
    if state_hash(state) != record.applied_checkpoint:
        raise CannotCheck(f"checkpoint {path} does not hold the state its name says (damaged)")
    return state


def archived_contributions(folder: Path, record: RoundRecord) -> dict[str, bytes]:
    """The archived bytes of the record's accepted contributions, by hotkey."""
    accepted = set(record.accepted)
    try:
        return {p.stem: p.read_bytes() for p in folder.glob("*.safetensors") if p.stem in accepted}
    except OSError as exc:
        raise CannotCheck(f"the archive {folder} does not read ({exc})") from None


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESET_SETTINGS))
    parser.add_argument("--vocab-size", type=int, default=0, help="0: the preset's")
    parser.add_argument("--model", default="", help="the subnet's pretrained model (hub id or folder; its "
                                                    "config alone is read), instead of --preset")
    parser.add_argument("--model-revision", default="", help="hub revision of --model")


def model_of(args: argparse.Namespace) -> tuple[ModelPreset | str, int]:
    """The architecture and vocabulary the rounds were trained with (what shard masks need)."""
    if args.model:
        architecture = pretrained_architecture(PretrainedSource(args.model, args.model_revision))
        return architecture, int(json.loads(architecture.hf_config)["vocab_size"])
    return args.preset, args.vocab_size or PRESET_SETTINGS[args.preset].vocab_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay a validator's round and check its checkpoint hash")
    parser.add_argument("--state-dir", required=True, help="the lead validator's --neuron.state_dir")
    parser.add_argument("--round", type=int, required=True)
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    try:
        record, got = replay_from_state_dir(Path(args.state_dir).expanduser(), args.round, *model_of(args))
    except ReplayError as exc:
        if exc.disproves:
            print(f"round {args.round}: MISMATCH: the record's accepted contributions do not replay: {exc}")
            return 1
        print(f"cannot check round {args.round}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a fault of the replay itself is no verdict on the round
        traceback.print_exc()
        print(f"cannot check round {args.round}: the replay failed ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    ok = got == record.new_checkpoint
    print(f"round {args.round}: record {record.digest()[:16]}, {len(record.accepted)} accepted, "
          f"checkpoint {record.new_checkpoint[:16]} {'REPRODUCED' if ok else 'MISMATCH: replay gives ' + got[:16]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
