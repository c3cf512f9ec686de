"""Tensor payloads on the wire: safetensors bytes with string metadata, never pickle."""
from __future__ import annotations

import json

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

_HEADER_LEN_BYTES = 8
META_KEY = "meta"


class PayloadError(ValueError):
    """A payload that is not a well-formed safetensors blob within the limits."""


def encode_tensors(tensors: dict[str, torch.Tensor], meta: dict | None = None) -> bytes:
    """Deterministic encoding: keys sorted, contiguous CPU tensors, meta as one JSON string."""
    ordered = {name: tensors[name].detach().to("cpu").contiguous() for name in sorted(tensors)}
    metadata = {META_KEY: json.dumps(meta, sort_keys=True)} if meta is not None else None
    return st_save(ordered, metadata=metadata)


def read_metadata(data: bytes, max_bytes: int) -> dict | None:
    """Parse only the header's metadata (cheap; lets a receiver reject before decoding tensors)."""
    header = _header(data, max_bytes)
    raw = header.get("__metadata__", {}).get(META_KEY)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"metadata is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise PayloadError("metadata must be a JSON object")
    return meta


def decode_tensors(data: bytes, max_bytes: int) -> tuple[dict[str, torch.Tensor], dict | None]:
    meta = read_metadata(data, max_bytes)
    try:
        tensors = st_load(data)
    except (SafetensorError, RuntimeError, ValueError) as exc:
        raise PayloadError(f"not a valid safetensors payload: {exc}") from exc
    return tensors, meta


def _header(data: bytes, max_bytes: int) -> dict:
    if len(data) > max_bytes:
        raise PayloadError(f"payload of {len(data)} bytes exceeds the limit of {max_bytes}")
    if len(data) < _HEADER_LEN_BYTES:
        raise PayloadError("payload too short to be safetensors")
    header_len = int.from_bytes(data[:_HEADER_LEN_BYTES], "little")
    if header_len <= 0 or _HEADER_LEN_BYTES + header_len > len(data):
        raise PayloadError("safetensors header length out of range")
    try:
        header = json.loads(data[_HEADER_LEN_BYTES:_HEADER_LEN_BYTES + header_len])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PayloadError(f"safetensors header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise PayloadError("safetensors header must be a JSON object")
    return header
