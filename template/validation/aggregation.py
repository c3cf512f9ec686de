"""Robust, replayable aggregation of accepted pseudo-gradients (ALGORITHMS.md §7.5).

Each accepted delta is clipped per tensor to the accepted median norm of that tensor, then the
clipped deltas are averaged with equal weights in the given order. No coordinate-wise
trimming: on sparse top-k vectors it would trim the few non-zeros.

Replay: norms come from `norms.tensor_norm` (a fixed-order sum, the same on every machine),
the median and the clip factor are Python float arithmetic, and the rest is elementwise
float32 ops in the given order, so any validator rebuilds the aggregate bit for bit.
"""

from __future__ import annotations

import statistics
from typing import Mapping, Sequence

import torch

from template.validation.norms import tensor_norm

Delta = Mapping[str, torch.Tensor]


def median_tensor_norms(deltas: Sequence[Delta]) -> dict[str, float]:
    """Per tensor name, the median of its L2 norm over the deltas (mean of the two middle
    values for an even count)."""
    if not deltas:
        return {}
    return {name: statistics.median(tensor_norm(d[name]) for d in deltas) for name in deltas[0]}


def clip_to_norms(delta: Delta, max_norms: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """Scale down each tensor whose norm exceeds `max_norms[name]`; others pass through
    unchanged (the same tensor object, never modified)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in delta.items():
        limit = max_norms.get(name)
        norm = tensor_norm(tensor)
        if limit is None or norm <= limit:
            out[name] = tensor
        else:
            factor = torch.tensor(limit / norm, dtype=tensor.dtype)
            out[name] = tensor * factor
    return out


def median_norm_clip(deltas: Sequence[Delta]) -> list[dict[str, torch.Tensor]]:
    """Clip every delta per tensor to that tensor's median norm over `deltas`."""
    medians = median_tensor_norms(deltas)
    return [clip_to_norms(d, medians) for d in deltas]


def aggregate(
    accepted: Sequence[Delta], min_contributions: int = 2
) -> dict[str, torch.Tensor] | None:
    """Median-norm clip, then the equal-weight mean, summed in the given order.

    Returns None when fewer than `min_contributions` are accepted: the unit stays unchanged
    this round, so a lone attacker never steers it.
    """
    if len(accepted) < max(1, min_contributions):
        return None
    names = list(accepted[0].keys())
    for i, d in enumerate(accepted[1:], start=1):
        if set(d) != set(names):
            raise ValueError(f"accepted delta {i} has different tensor names than delta 0")
    clipped = median_norm_clip(accepted)
    count = len(clipped)
    mean: dict[str, torch.Tensor] = {}
    for name in names:
        total = torch.zeros_like(clipped[0][name], dtype=torch.float32)
        for d in clipped:
            total += d[name].float()
        mean[name] = total / count
    return mean
