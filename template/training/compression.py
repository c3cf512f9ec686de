"""SparseLoCo-style compression of pseudo-gradients (wire format: docs/protocol.md).

Error feedback e <- ef_beta * e + delta; each tensor is cut into chunks of chunk*chunk elements
(2-D: chunk x chunk tiles; other ranks: flat runs), padded at the edges; per chunk the top-k
|e| are sent as packed in-chunk indices (ceil(log2(chunk^2)) = 12 bits) plus `bits`-bit codes
on a uniform symmetric grid scaled by one fp16 scale (the chunk's max |value|); then
e <- e - decode(sent). Decoding is a pure function of the wire tensors: bit for bit the same
dense delta on every machine.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from protocol.recipe import CompressionConfig

FIELDS = ("idx", "codes", "scale")
SEP = "|"  # wire names are f"{param}|{field}"; '|' never appears in torch parameter names
FP16_MAX = 65504.0
SCALE_FIT_ITERS = 3


class MalformedUpdate(ValueError):
    """A contribution whose wire tensors do not decode; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class PackedTensor:
    idx: torch.Tensor  # uint8, packed index_bits-wide in-chunk indices, ascending per chunk
    codes: torch.Tensor  # uint8, packed bits-wide value codes
    scale: torch.Tensor  # float16 [n_chunks]


@dataclass
class CompressedUpdate:
    cfg: CompressionConfig
    parts: dict[str, PackedTensor] = field(default_factory=dict)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for name in sorted(self.parts):
            part = self.parts[name]
            out[f"{name}{SEP}idx"] = part.idx
            out[f"{name}{SEP}codes"] = part.codes
            out[f"{name}{SEP}scale"] = part.scale
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]],
                     cfg: CompressionConfig) -> CompressedUpdate:
        """Parse and fully validate wire tensors; raises MalformedUpdate(reason)."""
        if not isinstance(tensors, dict):
            raise MalformedUpdate(f"expected a dict of tensors, got {type(tensors).__name__}")
        grouped: dict[str, dict[str, torch.Tensor]] = {}
        for key, t in tensors.items():
            name, sep, fld = str(key).rpartition(SEP)
            if not sep or fld not in FIELDS:
                raise MalformedUpdate(f"unexpected tensor name {key!r}")
            if name not in shapes:
                raise MalformedUpdate(f"unknown parameter {name!r}")
            if not isinstance(t, torch.Tensor):
                raise MalformedUpdate(f"{key}: not a tensor")
            grouped.setdefault(name, {})[fld] = t
        missing = sorted(set(shapes) - set(grouped))
        if missing:
            raise MalformedUpdate(f"missing parameters: {missing[:5]}")
        update = cls(cfg)
        for name in sorted(grouped):
            fields = grouped[name]
            absent = [f for f in FIELDS if f not in fields]
            if absent:
                raise MalformedUpdate(f"{name}: missing fields {absent}")
            part = PackedTensor(fields["idx"], fields["codes"], fields["scale"])
            _validate_part(name, part, tuple(shapes[name]), cfg)
            update.parts[name] = part
        return update


# ---------------------------------------------------------------- chunk layout


@dataclass(frozen=True)
class _Layout:
    shape: tuple[int, ...]
    n_chunks: int
    k: torch.Tensor  # int64 [n_chunks]: values sent per chunk (topk, fewer in tiny edge chunks)

    @property
    def total_k(self) -> int:
        return int(self.k.sum())


def _tile(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """[*shape] -> [n_chunks, chunk*chunk], zero-padded at the edges."""
    e = chunk * chunk
    if x.ndim == 2:
        r, c = x.shape
        nr, nc = -(-r // chunk), -(-c // chunk)
        padded = torch.nn.functional.pad(x, (0, nc * chunk - c, 0, nr * chunk - r))
        return padded.view(nr, chunk, nc, chunk).permute(0, 2, 1, 3).reshape(nr * nc, e)
    flat = x.reshape(-1)
    n = -(-flat.numel() // e)
    return torch.nn.functional.pad(flat, (0, n * e - flat.numel())).view(n, e)


def _untile(tiles: torch.Tensor, shape: tuple[int, ...], chunk: int) -> torch.Tensor:
    if len(shape) == 2:
        r, c = shape
        nr, nc = -(-r // chunk), -(-c // chunk)
        full = tiles.view(nr, nc, chunk, chunk).permute(0, 2, 1, 3).reshape(nr * chunk, nc * chunk)
        return full[:r, :c].contiguous()
    n = math.prod(shape)
    return tiles.reshape(-1)[:n].reshape(shape).contiguous()


def _real_slots(shape: tuple[int, ...], chunk: int) -> torch.Tensor:
    """bool [n_chunks, chunk*chunk]: which slots hold real elements (not edge padding)."""
    return _tile(torch.ones(shape, dtype=torch.bool), chunk)


@lru_cache(maxsize=4096)
def _layout(shape: tuple[int, ...], chunk: int, topk: int) -> _Layout:
    k = _real_slots(shape, chunk).sum(dim=1).clamp(max=topk).to(torch.long)
    return _Layout(shape, int(k.numel()), k)


# ---------------------------------------------------------------- bit packing


def pack_bits(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Non-negative ints < 2**bits -> uint8 bytes, little-endian bit order, zero tail bits."""
    v = values.detach().to("cpu", torch.int64).numpy().astype(np.uint32)
    bit_matrix = ((v[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    return torch.from_numpy(np.packbits(bit_matrix.reshape(-1), bitorder="little").copy())


def unpack_bits(data: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    raw = np.unpackbits(data.detach().cpu().contiguous().numpy(), bitorder="little")
    if raw[count * bits:].any():
        raise MalformedUpdate("non-zero padding bits after the last packed value")
    bit_matrix = raw[: count * bits].reshape(count, bits).astype(np.int64)
    return torch.from_numpy(bit_matrix @ (1 << np.arange(bits, dtype=np.int64)))


def _packed_len(count: int, bits: int) -> int:
    return -(-count * bits // 8)


# ---------------------------------------------------------------- encode / decode


def _levels(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Code c in [0, L) -> (2c - (L-1)) / (L-1) in [-1, 1]; 2 bits: -1, -1/3, 1/3, 1."""
    top = (1 << bits) - 1
    return (2 * codes.to(torch.float32) - top) / top


def _quantise(vals: torch.Tensor, s: torch.Tensor, bits: int) -> torch.Tensor:
    """Nearest grid code for each value at per-value scale s (zero scale -> a middle code)."""
    top_code = (1 << bits) - 1
    unit = torch.where(s > 0, vals / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s))
    return torch.round((unit.clamp(-1, 1) + 1) * top_code / 2).to(torch.long)


def _fit_scale(vals: torch.Tensor, chunk_of: torch.Tensor, n_chunks: int, bits: int,
               iters: int = SCALE_FIT_ITERS) -> torch.Tensor:
    """Per-chunk fp16 scale: start at max|v|, then a few least-squares (Lloyd) refits.

    At 2 bits the max-scaled grid sends most top-k values ~20-40% too large; the refit halves
    that error. Encoder-side only: decoding just reads the scale.
    """
    scale = torch.zeros(n_chunks).scatter_reduce_(0, chunk_of, vals.abs(), "amax")
    for _ in range(iters):
        lev = _levels(_quantise(vals, scale[chunk_of], bits), bits)
        num = torch.zeros(n_chunks).index_add_(0, chunk_of, vals * lev)
        den = torch.zeros(n_chunks).index_add_(0, chunk_of, lev * lev)
        scale = torch.where(den > 0, num / den.clamp(min=1e-30), scale).clamp(min=0)
    return scale.clamp(max=FP16_MAX).to(torch.float16)


def _encode_tensor(e: torch.Tensor, cfg: CompressionConfig) -> tuple[PackedTensor, torch.Tensor]:
    """Top-k + quantise one error tensor; returns the packed part and its dense decode."""
    shape = tuple(e.shape)
    lay = _layout(shape, cfg.chunk, cfg.topk)
    if lay.n_chunks == 0:
        empty = torch.zeros(0, dtype=torch.uint8)
        return PackedTensor(empty, empty.clone(), torch.zeros(0, dtype=torch.float16)), e.clone()
    tiles = _tile(e, cfg.chunk)
    kmax = int(lay.k.max())
    # Padding ranks below every real slot, so a chunk never spends its k on padding.
    mag = torch.where(_real_slots(shape, cfg.chunk), tiles.abs(), torch.full_like(tiles, -1.0))
    top = mag.topk(kmax, dim=1, sorted=True).indices
    keep = torch.arange(kmax).unsqueeze(0) < lay.k.unsqueeze(1)
    # Canonical order on the wire: ascending index within each chunk, kept slots first.
    idx = torch.where(keep, top, torch.full_like(top, cfg.chunk_elems)).sort(dim=1).values
    idx_flat = idx[keep]
    chunk_of = torch.repeat_interleave(torch.arange(lay.n_chunks), lay.k)
    vals = tiles[chunk_of, idx_flat]
    scale = _fit_scale(vals, chunk_of, lay.n_chunks, cfg.bits)
    s = scale.to(torch.float32)[chunk_of]
    codes = _quantise(vals, s, cfg.bits)
    part = PackedTensor(pack_bits(idx_flat, cfg.index_bits), pack_bits(codes, cfg.bits), scale)
    sent = torch.zeros_like(tiles)
    sent[chunk_of, idx_flat] = s * _levels(codes, cfg.bits)
    return part, _untile(sent, shape, cfg.chunk)


def _decode_part(part: PackedTensor, shape: tuple[int, ...], cfg: CompressionConfig
                 ) -> torch.Tensor:
    lay = _layout(shape, cfg.chunk, cfg.topk)
    if lay.n_chunks == 0:
        return torch.zeros(shape, dtype=torch.float32)
    idx = unpack_bits(part.idx, cfg.index_bits, lay.total_k)
    codes = unpack_bits(part.codes, cfg.bits, lay.total_k)
    chunk_of = torch.repeat_interleave(torch.arange(lay.n_chunks), lay.k)
    tiles = torch.zeros(lay.n_chunks, cfg.chunk_elems, dtype=torch.float32)
    tiles[chunk_of, idx] = part.scale.to(torch.float32)[chunk_of] * _levels(codes, cfg.bits)
    return _untile(tiles, shape, cfg.chunk)


def _validate_part(name: str, part: PackedTensor, shape: tuple[int, ...],
                   cfg: CompressionConfig) -> None:
    lay = _layout(shape, cfg.chunk, cfg.topk)
    expected = {"idx": (torch.uint8, _packed_len(lay.total_k, cfg.index_bits)),
                "codes": (torch.uint8, _packed_len(lay.total_k, cfg.bits)),
                "scale": (torch.float16, lay.n_chunks)}
    for fld, (dtype, size) in expected.items():
        t = getattr(part, fld)
        if t.dtype != dtype:
            raise MalformedUpdate(f"{name}|{fld}: dtype {t.dtype}, expected {dtype}")
        if t.ndim != 1 or t.numel() != size:
            raise MalformedUpdate(f"{name}|{fld}: shape {tuple(t.shape)}, expected ({size},)")
    if not torch.isfinite(part.scale).all() or (part.scale < 0).any():
        raise MalformedUpdate(f"{name}|scale: scales must be finite and >= 0")
    if lay.n_chunks == 0:
        return
    try:
        idx = unpack_bits(part.idx, cfg.index_bits, lay.total_k)
        unpack_bits(part.codes, cfg.bits, lay.total_k)
    except MalformedUpdate as exc:
        raise MalformedUpdate(f"{name}: {exc.reason}") from None
    if lay.total_k and int(idx.max()) >= cfg.chunk_elems:
        raise MalformedUpdate(f"{name}|idx: index {int(idx.max())} >= {cfg.chunk_elems}")
    chunk_of = torch.repeat_interleave(torch.arange(lay.n_chunks), lay.k)
    if not _real_slots(shape, cfg.chunk)[chunk_of, idx].all():
        raise MalformedUpdate(f"{name}|idx: index points into edge padding, outside {shape}")
    same_chunk = chunk_of[1:] == chunk_of[:-1]
    if (same_chunk & (idx[1:] <= idx[:-1])).any():
        raise MalformedUpdate(f"{name}|idx: indices must be strictly ascending within a chunk")


def compress(delta: dict[str, torch.Tensor], residual: dict[str, torch.Tensor] | None,
             cfg: CompressionConfig) -> tuple[CompressedUpdate, dict[str, torch.Tensor]]:
    """Compress delta with error feedback; returns the update and the new residual."""
    update = CompressedUpdate(cfg)
    new_residual: dict[str, torch.Tensor] = {}
    for name in sorted(delta):
        d = delta[name].detach().to("cpu", torch.float32)
        if not torch.isfinite(d).all():
            raise ValueError(f"{name}: delta has non-finite values")
        prev = residual.get(name) if residual else None
        if prev is not None and prev.shape != d.shape:
            raise ValueError(f"{name}: residual shape {tuple(prev.shape)} != {tuple(d.shape)}")
        e = d.clone() if prev is None else cfg.ef_beta * prev.to(torch.float32) + d
        part, sent = _encode_tensor(e, cfg)
        update.parts[name] = part
        new_residual[name] = e - sent
    return update, new_residual


class DecodedUpdate(Mapping[str, torch.Tensor]):
    """The dense fp32 deltas of an update, decoded tensor by tensor when read and never kept:
    a validator holds a round's contributions packed (~280x smaller than dense) and every
    reader (checks, norms, similarity, evaluation, aggregation) walks them one tensor at a time.
    Deterministic: every read of a name gives the same tensor."""

    def __init__(self, update: CompressedUpdate, shapes: Mapping[str, tuple[int, ...]]) -> None:
        unknown = sorted(set(update.parts) - set(shapes))
        if unknown:
            raise MalformedUpdate(f"unknown parameter {unknown[0]!r}")
        self._update = update
        self._shapes = {name: tuple(shapes[name]) for name in sorted(update.parts)}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._shapes:
            raise KeyError(name)
        return _decode_part(self._update.parts[name], self._shapes[name], self._update.cfg)

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)


def decompress(update: CompressedUpdate, shapes: Mapping[str, tuple[int, ...]]
               ) -> dict[str, torch.Tensor]:
    """Dense fp32 deltas, deterministic; parameters the update lacks are not returned."""
    return dict(DecodedUpdate(update, shapes))


def wire_bytes(update: CompressedUpdate) -> int:
    return sum(t.numel() * t.element_size() for t in update.to_tensors().values())


def dense_bytes(shapes: dict[str, tuple[int, ...]]) -> int:
    """fp32 size of the same tensors (the baseline of the compression ratio)."""
    return sum(4 * math.prod(s) for s in shapes.values())


def shapes_of(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor (what decoding and shard plans take)."""
    return {name: tuple(t.shape) for name, t in state.items()}
