"""Structural, outlier and duplicate checks on decoded pseudo-gradients.

A delta is a dense `dict[str, torch.Tensor]` (float32, name -> tensor, delta = base - trained).
Every single-contribution check returns `None` when the delta passes and a reason string a
miner can act on when it fails. `find_duplicates` looks at a whole round at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from template.validation.norms import delta_norm

Delta = Mapping[str, torch.Tensor]

# Column budget of one streamed block in `find_duplicates` ([n, cols] float32 ~ 64 MiB).
_BLOCK_ELEMENTS = 1 << 24


def payload_problem(delta: object) -> str | None:
    """Reason the object is not a usable delta at all (not a dict of floating tensors)."""
    if delta is None:
        return "no payload"
    if not isinstance(delta, Mapping):
        return f"payload is a {type(delta).__name__}, expected a dict of tensors"
    if not delta:
        return "payload has no tensors"
    for name, value in delta.items():
        if not isinstance(name, str):
            return f"tensor name {name!r} is not a string"
        if not isinstance(value, torch.Tensor):
            return f"{name!r} is a {type(value).__name__}, expected a tensor"
        if not value.is_floating_point():
            return f"{name!r} has dtype {value.dtype}, expected a floating dtype"
    return None


def non_finite(delta: Delta) -> str | None:
    """Reject NaN or inf anywhere; the reason names the first offending tensors."""
    bad = []
    for name, tensor in delta.items():
        count = int((~torch.isfinite(tensor)).sum())
        if count:
            bad.append(f"{name!r} ({count} of {tensor.numel()})")
    if bad:
        return "non-finite values in " + ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
    return None


def wrong_shape(delta: Delta, expected_shapes: Mapping[str, Sequence[int]]) -> str | None:
    """Reject missing or unexpected tensor names and shape mismatches."""
    problems = []
    missing = sorted(set(expected_shapes) - set(delta))
    extra = sorted(set(delta) - set(expected_shapes))
    if missing:
        problems.append("missing tensors: " + ", ".join(missing))
    if extra:
        problems.append("unexpected tensors: " + ", ".join(extra))
    for name in sorted(set(delta) & set(expected_shapes)):
        want, got = tuple(expected_shapes[name]), tuple(delta[name].shape)
        if want != got:
            problems.append(f"shape mismatch for {name!r}: expected {want}, got {got}")
    return "; ".join(problems) if problems else None


def is_empty(delta: Delta, eps: float = 1e-12) -> str | None:
    """Reject an update that is all zeros or whose norm is at most `eps` (a no-op)."""
    norm = delta_norm(delta)
    if norm <= eps:
        return f"empty update (norm {norm:.3g} <= {eps:g})"
    return None


def norm_outlier(
    norm: float, median_norm: float, low: float = 0.05, high: float = 10.0
) -> str | None:
    """Reject a norm far from the round's median: below `low`x looks like a no-op, above
    `high`x like a model-replacement attempt."""
    if median_norm <= 0.0:
        return None if norm <= 0.0 else f"norm {norm:.4g} while the round's median norm is 0"
    ratio = norm / median_norm
    if ratio < low:
        return f"norm {norm:.4g} is {ratio:.3g}x the median {median_norm:.4g} (< {low:g}x: no-op)"
    if ratio > high:
        return (
            f"norm {norm:.4g} is {ratio:.3g}x the median {median_norm:.4g} "
            f"(> {high:g}x: replacement attempt)"
        )
    return None


@dataclass(frozen=True)
class DuplicateFinding:
    """`key` (the later arrival) duplicates `original` (the earlier one, which keeps its score)."""

    key: str
    original: str
    cosine: float
    overlap: float
    reason: str


def _topk_of_nonzeros(idx: torch.Tensor, values: torch.Tensor, k: int) -> torch.Tensor:
    """Sorted positions of the k largest |values| among a tensor's non-zeros (`idx` their
    positions): a sparse delta's set is its non-zeros, so ties among zeros never create overlap."""
    if values.numel() > k:
        idx = idx[torch.topk(values.abs(), k, sorted=False).indices]
    return torch.sort(idx).values


def _gram_over_union(positions: Sequence[torch.Tensor], values: Sequence[torch.Tensor] | None,
                     cols: int) -> torch.Tensor:
    """[n, n] float64 Gram matrix of n sparse vectors given as (positions, values) (values None:
    all ones, which counts shared positions). Only the union of the positions is materialised,
    in column blocks of `cols`, one [n, cols] @ [cols, n] product per block."""
    n = len(positions)
    gram = torch.zeros(n, n, dtype=torch.float64)
    device = positions[0].device
    sizes = torch.tensor([p.numel() for p in positions], dtype=torch.long)
    union, column = torch.unique(torch.cat(list(positions)), return_inverse=True)
    row = torch.repeat_interleave(torch.arange(n, device=device), sizes.to(device))
    flat_values = torch.cat(list(values)) if values is not None else None
    for start in range(0, union.numel(), cols):
        width = min(cols, union.numel() - start)
        inside = (column >= start) & (column < start + width)
        block = torch.zeros(n, width, device=device)
        block[row[inside], column[inside] - start] = 1.0 if flat_values is None else flat_values[inside]
        gram += (block @ block.T).cpu().double()
    return gram


def similarity_matrices(
    deltas: Sequence[Delta], topk_fraction: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise cosine of the flattened deltas and top-k index-set overlap, both [n, n] float64.

    Walks tensor by tensor: each delta's tensor is read once (a lazily decoded delta is
    decoded then) and kept only as its non-zeros, and the Gram matrix and the top-k
    co-occurrence counts are accumulated over the union of those positions in column blocks,
    so memory stays at one tensor's non-zeros per delta plus one block, however many
    parameters there are. Overlap of i and j is |topk_i & topk_j| / min(|topk_i|, |topk_j|)
    (0 when either set is empty).
    """
    n = len(deltas)
    gram = torch.zeros(n, n, dtype=torch.float64)
    shared = torch.zeros(n, n, dtype=torch.float64)
    set_sizes = torch.zeros(n, dtype=torch.float64)
    if n == 0:
        return gram, shared
    names = list(deltas[0].keys())
    for d in deltas[1:]:
        if set(d) != set(names):
            raise ValueError("deltas differ in tensor names; run wrong_shape first")
    cols = max(1, _BLOCK_ELEMENTS // n)
    for name in names:
        positions, values, numel = [], [], None
        for d in deltas:
            flat = d[name].reshape(-1).float()
            if numel is not None and flat.numel() != numel:
                raise ValueError(f"deltas differ in the size of {name!r}; run wrong_shape first")
            numel = flat.numel()
            idx = torch.nonzero(flat).squeeze(1)
            positions.append(idx)
            values.append(flat[idx])
        gram += _gram_over_union(positions, values, cols)
        k = min(numel, max(1, math.ceil(topk_fraction * numel)))
        picks = [_topk_of_nonzeros(p, v, k) for p, v in zip(positions, values)]
        set_sizes += torch.tensor([p.numel() for p in picks], dtype=torch.float64)
        shared += _gram_over_union(picks, None, cols)
    norms = gram.diagonal().clamp_min(0).sqrt()
    denom = norms[:, None] * norms[None, :]
    cosine = torch.where(denom > 0, gram / denom.clamp_min(1e-300), torch.zeros_like(gram))
    smaller = torch.minimum(set_sizes[:, None], set_sizes[None, :])
    overlap = torch.where(smaller > 0, shared / smaller.clamp_min(1), torch.zeros_like(shared))
    return cosine, overlap


def find_duplicates(
    deltas: Sequence[tuple[str, Delta]],
    cosine_threshold: float = 0.95,
    overlap_threshold: float = 0.5,
    topk_fraction: float = 0.01,
) -> dict[str, DuplicateFinding]:
    """Flag later contributions that copy an earlier one.

    `deltas` is in arrival order, earliest first. A contribution whose cosine with an earlier
    one exceeds `cosine_threshold`, or whose top-k index set (the `topk_fraction` largest
    |values| of each tensor) overlaps an earlier one's by more than `overlap_threshold`, is
    a duplicate of the earliest such contribution. Earlier contributions are never flagged
    for being copied. Returns findings keyed by the duplicate's key.
    """
    keys = [key for key, _ in deltas]
    if len(set(keys)) != len(keys):
        raise ValueError("contribution keys must be unique")
    if len(deltas) < 2:
        return {}
    cosine, overlap = similarity_matrices([d for _, d in deltas], topk_fraction)
    return duplicate_findings(keys, cosine, overlap, cosine_threshold, overlap_threshold)


def duplicate_findings(
    keys: Sequence[str],
    cosine: torch.Tensor,
    overlap: torch.Tensor,
    cosine_threshold: float,
    overlap_threshold: float,
) -> dict[str, DuplicateFinding]:
    """Findings from precomputed similarity matrices whose rows follow `keys` (earliest first)."""
    findings: dict[str, DuplicateFinding] = {}
    for j in range(1, len(keys)):
        for i in range(j):
            cos, ovl = float(cosine[i, j]), float(overlap[i, j])
            by_value, by_index = cos > cosine_threshold, ovl > overlap_threshold
            if by_value or by_index:
                why = []
                if by_value:
                    why.append(f"cosine {cos:.4f} > {cosine_threshold:g}")
                if by_index:
                    why.append(f"top-k overlap {ovl:.3f} > {overlap_threshold:g}")
                findings[keys[j]] = DuplicateFinding(
                    key=keys[j],
                    original=keys[i],
                    cosine=cos,
                    overlap=ovl,
                    reason=f"duplicate of earlier {keys[i]} ({', '.join(why)})",
                )
                break
    return findings


def duplicate_groups(findings: dict[str, DuplicateFinding]) -> list[set[str]]:
    """Connected groups of near-identical contributions (each copy joined to its original)."""
    groups: list[set[str]] = []
    for finding in findings.values():
        pair = {finding.key, finding.original}
        touching = [g for g in groups if g & pair]
        merged = pair.union(*touching)
        groups = [g for g in groups if not g & pair] + [merged]
    return groups
