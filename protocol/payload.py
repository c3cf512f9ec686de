"""Tensor payloads on the wire: safetensors bytes with string metadata, never pickle.

Every byte that arrives may be crafted, so decoding checks the header under explicit bounds
(`protocol.limits`) before it costs memory: the 8-byte length prefix against the header cap,
the bracket depth before any JSON recursion, then tensor count, names, dtypes, shapes and
offsets, and a flat, bounded str -> str metadata map. Every failure is a PayloadError.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from protocol.limits import (MAX_PAYLOAD_HEADER_BYTES, MAX_PAYLOAD_METADATA_BYTES, MAX_PAYLOAD_TENSORS,
                             MAX_TENSOR_NAME_CHARS)

_HEADER_LEN_BYTES = 8
META_KEY = "meta"
_METADATA_KEY = "__metadata__"
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}
# Contributions carry U8 (packed indices and codes) and F16 (scales); the others are the plain
# numeric types a payload may carry. Exotic dtypes (F8_*, U16..U64, C64) are refused.
DTYPE_BYTES = {"U8": 1, "F16": 2, "BF16": 2, "I32": 4, "I64": 8, "F32": 4}
MAX_JSON_DEPTH = 8  # a header is 3 deep (object, entry, shape); ContributionMeta is 2
MAX_TENSOR_DIMS = 8
_MAX_DIM = 2**63 - 1
_TENSOR_NAME = re.compile(r"[A-Za-z0-9_.:|/-]+")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class PayloadError(ValueError):
    """A payload that is not a well-formed safetensors blob within the limits."""


def encode_tensors(tensors: dict[str, torch.Tensor], meta: dict | None = None) -> bytes:
    """Deterministic encoding: keys sorted, contiguous CPU tensors, meta as one JSON string."""
    ordered = {name: tensors[name].detach().to("cpu").contiguous() for name in sorted(tensors)}
    metadata = {META_KEY: json.dumps(meta, sort_keys=True)} if meta is not None else None
    return st_save(ordered, metadata=metadata)


def read_metadata(data: bytes, max_bytes: int, max_header_bytes: int = MAX_PAYLOAD_HEADER_BYTES) -> dict | None:
    """Check the header and parse its metadata (cheap; lets a receiver reject before decoding
    tensors)."""
    _, metadata = _checked_header(data, max_bytes, max_header_bytes)
    return _meta(metadata)


def decode_tensors(data: bytes, max_bytes: int,
                   max_header_bytes: int = MAX_PAYLOAD_HEADER_BYTES) -> tuple[dict[str, torch.Tensor], dict | None]:
    _, metadata = _checked_header(data, max_bytes, max_header_bytes)
    meta = _meta(metadata)
    try:
        tensors = st_load(bytes(data))
    except Exception as exc:  # noqa: BLE001 - the checked header leaves only safetensors' own refusals
        raise PayloadError(f"not a valid safetensors payload: {exc}") from exc
    return tensors, meta


def _meta(metadata: dict[str, str]) -> dict | None:
    raw = metadata.get(META_KEY)
    if raw is None:
        return None
    meta = _load_json(raw.encode("utf-8", "surrogatepass"), "metadata", finite_only=False)
    if not isinstance(meta, dict):
        raise PayloadError("metadata must be a JSON object")
    return meta


def _checked_header(data: Any, max_bytes: int, max_header_bytes: int) -> tuple[dict[str, dict], dict[str, str]]:
    """The header's tensor entries and metadata, every bound checked before it is parsed further."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PayloadError(f"payload must be bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise PayloadError(f"payload of {len(data)} bytes exceeds the limit of {max_bytes}")
    if len(data) < _HEADER_LEN_BYTES:
        raise PayloadError("payload too short to be safetensors")
    header_len = int.from_bytes(data[:_HEADER_LEN_BYTES], "little")
    if header_len <= 0 or header_len > max_header_bytes:
        raise PayloadError(f"safetensors header length {header_len} out of range (limit {max_header_bytes})")
    if _HEADER_LEN_BYTES + header_len > len(data):
        raise PayloadError(f"safetensors header length {header_len} runs past the {len(data)}-byte payload")
    header = _load_json(bytes(data[_HEADER_LEN_BYTES:_HEADER_LEN_BYTES + header_len]), "safetensors header",
                        finite_only=True)
    if not isinstance(header, dict):
        raise PayloadError("safetensors header must be a JSON object")
    metadata = _metadata(header.pop(_METADATA_KEY)) if _METADATA_KEY in header else {}
    _check_entries(header, len(data) - _HEADER_LEN_BYTES - header_len)
    return header, metadata


def _load_json(raw: bytes, what: str, *, finite_only: bool) -> Any:
    depth = _json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise PayloadError(f"{what} nests {depth} deep, more than {MAX_JSON_DEPTH}")
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_without_duplicates,
                          parse_constant=_refuse_constant if finite_only else None)
    except PayloadError:
        raise
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, an int literal too long to convert
        raise PayloadError(f"{what} is not JSON: {exc}") from exc


def _json_depth(raw: bytes) -> int:
    """Deepest bracket nesting outside strings, found without recursion. Strings are lexed as
    JSON lexes them up to the first error, where json.loads stops too, so the depth it would
    reach is never more than this."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), np.int8(1), np.int8(-1))
    return int(np.cumsum(steps, dtype=np.int32).max())


def _without_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    # A duplicate key could mean one tensor to this check and another to safetensors' parser.
    obj: dict = {}
    for key, value in pairs:
        if key in obj:
            raise PayloadError(f"duplicate JSON key {key[:64]!r}")
        obj[key] = value
    return obj


def _refuse_constant(name: str) -> None:
    raise PayloadError(f"safetensors header holds the non-finite number {name}")


def _metadata(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise PayloadError(f"__metadata__ must be an object of strings, got {type(raw).__name__}")
    size = 0
    for key, value in raw.items():
        if not isinstance(value, str):
            raise PayloadError(f"__metadata__[{key[:32]!r}] must be a string, got {type(value).__name__}")
        size += len(key.encode("utf-8", "surrogatepass")) + len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_PAYLOAD_METADATA_BYTES:
        raise PayloadError(f"__metadata__ of {size} bytes exceeds the limit of {MAX_PAYLOAD_METADATA_BYTES}")
    return raw


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_DIM


def _check_entries(entries: dict[str, Any], data_len: int) -> None:
    """Names, dtypes and shapes as the protocol allows; offsets that tile the data exactly."""
    if len(entries) > MAX_PAYLOAD_TENSORS:
        raise PayloadError(f"{len(entries)} tensors exceed the limit of {MAX_PAYLOAD_TENSORS}")
    spans: list[tuple[int, int, str]] = []
    for name, entry in entries.items():
        if len(name) > MAX_TENSOR_NAME_CHARS or not _TENSOR_NAME.fullmatch(name):
            raise PayloadError(f"tensor name {name[:64]!r} is not 1..{MAX_TENSOR_NAME_CHARS} of [A-Za-z0-9_.:|/-]")
        if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
            raise PayloadError(f"tensor {name!r}: entry must hold exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
            raise PayloadError(f"tensor {name!r}: dtype {str(dtype)[:16]!r} is not one of {sorted(DTYPE_BYTES)}")
        if not isinstance(shape, list) or len(shape) > MAX_TENSOR_DIMS or not all(map(_is_count, shape)):
            raise PayloadError(f"tensor {name!r}: shape must be at most {MAX_TENSOR_DIMS} non-negative integers")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets)):
            raise PayloadError(f"tensor {name!r}: data_offsets must be two non-negative integers")
        begin, end = offsets
        if not begin <= end <= data_len:
            raise PayloadError(f"tensor {name!r}: data_offsets [{begin}, {end}] out of range of {data_len} data bytes")
        need = math.prod(shape) * DTYPE_BYTES[dtype]
        if end - begin != need:
            raise PayloadError(f"tensor {name!r}: data_offsets span {end - begin} bytes, shape and dtype need {need}")
        spans.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise PayloadError(f"tensor {name!r}: data starts at {begin}, expected {position} (overlap or gap)")
        position = end
    if position != data_len:
        raise PayloadError(f"tensor data covers {position} of {data_len} bytes")
