"""Opening one contribution: from the bytes a miner sent to its packed update, every check made
once. Scoring, replay and a follower's check of the lead all open contributions here, so the
three agree on what a usable contribution is."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from protocol.limits import MAX_CONTRIBUTION_BYTES
from protocol.messages import ContributionMeta, UnitOfWork
from protocol.payload import PayloadError, decode_tensors
from protocol.recipe import CompressionConfig
from template.training.compression import CompressedUpdate, DecodedUpdate, MalformedUpdate

MAX_REASON_CHARS = 300  # a reason quotes what the sender wrote: keep it short in reports and logs

# Rejection kinds: a caller tells bytes that are not the recorded ones from bytes that are bad.
HASH = "hash"  # not the bytes the round record names
PAYLOAD = "payload"  # not a well-formed payload (or anything at all went wrong opening it)
METADATA = "metadata"  # the metadata is not a ContributionMeta
MISMATCH = "mismatch"  # well formed, but for another sender, round, base, subnet or unit
UPDATE = "update"  # the wire tensors do not decode to an update of the model's shapes


@dataclass(frozen=True)
class Expected:
    """What the round expects of one contribution."""

    hotkey: str
    netuid: int
    round_index: int
    base_checkpoint: str
    unit: UnitOfWork = UnitOfWork()
    sha256: str | None = None  # the hash a round record names for these bytes (None: no record to match)


class Rejected(Exception):
    """Why a contribution cannot be used: `kind` (one of the kinds above) and `reason`."""

    def __init__(self, kind: str, reason: str) -> None:
        reason = reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS - 3] + "..."
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def open_contribution(body: bytes, expected: Expected, shapes: Mapping[str, tuple[int, ...]],
                      compression: CompressionConfig) -> DecodedUpdate:
    """The contribution's update, validated and kept packed (decoded tensor by tensor when read),
    or Rejected with the reason. Nothing else escapes: the bytes may be crafted, and one bad
    contribution must never cost the round the others."""
    try:
        return _open(body, expected, shapes, compression)
    except Rejected:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the decoder raises on crafted bytes is this one's rejection
        raise _rejection(exc) from None


def _rejection(exc: Exception) -> Rejected:
    try:
        if isinstance(exc, PayloadError):
            return Rejected(PAYLOAD, f"malformed payload: {exc}")
        if isinstance(exc, ValidationError):
            return Rejected(METADATA, f"malformed metadata: {exc.errors()[0].get('msg')}")
        if isinstance(exc, MalformedUpdate):
            return Rejected(UPDATE, f"malformed update: {exc.reason}")
        return Rejected(PAYLOAD, f"malformed payload: {type(exc).__name__}: {exc}")
    except Exception:  # noqa: BLE001 - an exception that cannot even describe itself
        return Rejected(PAYLOAD, f"malformed payload: {type(exc).__name__}")


def _open(body: bytes, expected: Expected, shapes: Mapping[str, tuple[int, ...]],
          compression: CompressionConfig) -> DecodedUpdate:
    if expected.sha256 is not None and hashlib.sha256(body).hexdigest() != expected.sha256:
        raise Rejected(HASH, "does not match the record's hash")
    tensors, raw_meta = decode_tensors(body, MAX_CONTRIBUTION_BYTES)
    meta = ContributionMeta.model_validate(raw_meta or {})
    problem = _mismatch(meta, expected)
    if problem:
        raise Rejected(MISMATCH, problem)
    return DecodedUpdate(CompressedUpdate.from_tensors(tensors, dict(shapes), compression), shapes)


def _mismatch(meta: ContributionMeta, expected: Expected) -> str | None:
    if meta.hotkey != expected.hotkey:
        return f"metadata names hotkey {meta.hotkey[:10]}, sent by {expected.hotkey[:10]}"
    if meta.round_index != expected.round_index:
        return f"round {meta.round_index} expected {expected.round_index}"
    if meta.base_checkpoint != expected.base_checkpoint:
        return f"trained from checkpoint {meta.base_checkpoint[:12]}, expected {expected.base_checkpoint[:12]}"
    if meta.netuid != expected.netuid:
        return f"netuid {meta.netuid} expected {expected.netuid}"
    if meta.unit != expected.unit:
        return f"trained unit {meta.unit.label}, assigned {expected.unit.label}"
    return None
