"""Crafted contribution payloads for the hostile campaign: one malformed payload of every class
the payload decoder must refuse (as `tests/test_hostile_payloads.py` crafts them), a payload whose
header declares 40 MB, and a well-formed contribution whose values are NaN."""
from __future__ import annotations

import json
import struct

import torch

from protocol.limits import MAX_PAYLOAD_HEADER_BYTES, MAX_TENSOR_NAME_CHARS
from protocol.messages import ContributionMeta, TrainRequest
from protocol.payload import encode_tensors
from template.training.compression import compress

DEEP = 200_000
MB = 1024 * 1024


def blob(header: dict | bytes | str, data: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors-shaped payload: 8-byte little-endian header length, header, data."""
    if isinstance(header, dict):
        header = json.dumps(header)
    raw = header.encode("utf-8", "surrogatepass") if isinstance(header, str) else header
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def entry(dtype: str = "U8", shape=(4,), offsets=(0, 4)) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def one_tensor(**changes) -> bytes:
    """A one-tensor payload (4 data bytes) with one field of the entry replaced."""
    return blob({"t": {**entry(), **changes}}, b"\x00" * 4)


def with_metadata(metadata) -> bytes:
    return blob({"__metadata__": metadata, "t": entry()}, b"\x00" * 4)


# (class, name, payload): one of each class, in the order the hostile miner sends them.
MALFORMED: list[tuple[str, str, bytes]] = [
    ("bad header length", "header length past end", blob(b"{}", length=1000)),
    ("deep nesting", "header nested 200k deep", blob(b"[" * DEEP + b"]" * DEEP)),
    ("metadata type", "metadata is a list", with_metadata(["meta"])),
    ("metadata type", "metadata is a string", with_metadata("meta")),
    ("metadata type", "metadata is null", with_metadata(None)),
    ("metadata type", "metadata is a number", with_metadata(5)),
    ("exotic dtype", "dtype F8_E8M0", one_tensor(dtype="F8_E8M0")),
    ("bad shape", "shape negative", one_tensor(shape=[-4])),
    ("bad offsets", "offsets overlap", blob({"a": entry(offsets=(0, 4)), "b": entry(offsets=(2, 6))},
                                            b"\x00" * 6)),
    ("bad name", "name with newline", blob({"a\nb": entry()}, b"\x00" * 4)),
    ("bad header length", "header length 2**64-1", blob(b"{}", length=2**64 - 1)),
    ("bad name", "name too long", blob({"x" * (MAX_TENSOR_NAME_CHARS + 1): entry()}, b"\x00" * 4)),
    ("deep nesting", "metadata value nested 200k deep", with_metadata({"meta": "[" * DEEP + "]" * DEEP})),
    ("exotic dtype", "dtype C64", one_tensor(dtype="C64")),
    ("bad shape", "shape 2**64", one_tensor(shape=[2**64])),
    ("bad header length", "header over the cap", blob(b" " * (MAX_PAYLOAD_HEADER_BYTES + 1))),
]


def huge_header(header_bytes: int = 40 * MB) -> bytes:
    """A payload whose header really is `header_bytes` long (a JSON list of empty lists)."""
    body = b"[" + b"[]," * ((header_bytes - 3) // 3) + b"[]"
    body += b" " * (header_bytes - len(body) - 1) + b"]"
    return struct.pack("<Q", len(body)) + body + b"\x00" * 16


def nan_contribution(order: TrainRequest, hotkey: str, base: dict[str, torch.Tensor]) -> bytes:
    """A contribution that is right in every field for `order` (metadata, names, shapes, sizes)
    but whose values are NaN."""
    generator = torch.Generator().manual_seed(order.round_index)
    delta = {name: 1e-3 * torch.randn(t.shape, generator=generator) for name, t in base.items()}
    update, _ = compress(delta, None, order.recipe.compression)
    tensors = update.to_tensors()
    for name, tensor in tensors.items():
        if name.endswith("|scale"):
            tensors[name] = torch.full_like(tensor, float("nan"))
    meta = ContributionMeta(netuid=order.netuid, round_index=order.round_index, base_checkpoint=order.base_checkpoint,
                            hotkey=hotkey, unit=order.unit, tokens_trained=1000, inner_steps=order.recipe.inner_steps,
                            loss_first=5.0, loss_last=4.0, train_seconds=1.0,
                            compression=order.recipe.compression.codec_id)
    return encode_tensors(tensors, meta.model_dump(mode="json"))
