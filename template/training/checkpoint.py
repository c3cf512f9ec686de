"""Checkpoints as deterministic safetensors bytes with content hashes (never pickle)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

MAX_HEADER_BYTES = 100 * 1024 * 1024


class CheckpointError(ValueError):
    """Bytes that are not a well-formed safetensors checkpoint."""


def _canonical(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sorted names, contiguous CPU tensors, no two sharing storage (safetensors refuses aliases)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
        t = t.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel() > 0:
            t = t.clone()
        seen.add(ptr)
        out[name] = t
    return out


def checkpoint_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """Safetensors bytes; the same state always gives the same bytes."""
    return st_save(_canonical(state))


def _check_header(data: bytes) -> None:
    if len(data) < 8:
        raise CheckpointError(f"checkpoint too short ({len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise CheckpointError(f"bad safetensors header length {n} for {len(data)} bytes")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"safetensors header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise CheckpointError("safetensors header is not an object")


def load_checkpoint_bytes(data: bytes) -> dict[str, torch.Tensor]:
    """Parse safetensors bytes into a state dict; anything else raises CheckpointError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CheckpointError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    _check_header(data)
    try:
        state = st_load(data)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"invalid safetensors checkpoint: {exc}") from exc
    return dict(sorted(state.items()))


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 hex over names, dtypes, shapes and raw bytes; equal states <=> equal hash."""
    h = hashlib.sha256()
    for name, t in _canonical(state).items():
        h.update(f"{name}|{str(t.dtype)}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        h.update(b";")
    return h.hexdigest()


def save_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> str:
    """Write atomically (tmp + rename) and return the state hash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(checkpoint_bytes(state))
    tmp.replace(path)
    return state_hash(state)


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_bytes(Path(path).read_bytes())
