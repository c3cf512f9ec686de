"""Robust, replayable aggregation of accepted pseudo-gradients (docs/scoring.md, "Aggregation").

Each accepted delta is clipped per tensor to the accepted median norm of that tensor, then the
clipped deltas are averaged in the given order. Both count each delta with its merge weight
(equal by default; the validator's are reported work x collusion share), except that no one
coldkey's contributions together weigh more than a third, or 1/n with only n coldkeys (sybils
do not outvote the rest). No coordinate-wise trimming: on sparse top-k vectors it would trim the
few non-zeros.

Replay: norms come from `norms.tensor_norm` (a fixed-order sum, the same on every machine),
the median and the clip factor are Python float arithmetic, and the rest is elementwise
float32 ops in the given order, so any validator rebuilds the aggregate bit for bit.
"""

from __future__ import annotations

import math
import statistics
from typing import Iterator, Mapping, Sequence

import torch

from template.validation.norms import tensor_norm

Delta = Mapping[str, torch.Tensor]


def weighted_median(values: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """The value at half the total weight (values sorted); where half falls exactly between two
    values, their mean. Equal weights give `statistics.median`."""
    if weights is None:
        return statistics.median(values)
    pairs = sorted(zip(values, weights))
    half, seen = sum(w for _, w in pairs) / 2, 0.0
    for i, (value, weight) in enumerate(pairs):
        seen += weight
        if math.isclose(seen, half, rel_tol=1e-12) and i + 1 < len(pairs):
            return (value + pairs[i + 1][0]) / 2
        if seen > half:
            return value
    return pairs[-1][0]


def median_tensor_norms(deltas: Sequence[Delta], weights: Sequence[float] | None = None) -> dict[str, float]:
    """Per tensor name, the median of its L2 norm over the deltas (mean of the two middle
    values for an even count), each delta counted with its weight when given: updates the
    merge weighs little (little reported work, a capped coldkey's many hotkeys) cannot drag the
    clip down on the ones it weighs fully."""
    if not deltas:
        return {}
    return {name: weighted_median([tensor_norm(d[name]) for d in deltas], weights) for name in deltas[0]}


class ClippedDelta(Mapping[str, torch.Tensor]):
    """`delta` with every tensor whose norm exceeds `max_norms[name]` scaled down to it, done
    when a tensor is read (its factor worked out once), so clipping a lazily decoded delta
    never holds it whole. A tensor within its limit is returned exactly as `delta` gives it."""

    def __init__(self, delta: Delta, max_norms: Mapping[str, float]) -> None:
        self._delta, self._limits = delta, max_norms
        self._factors: dict[str, torch.Tensor | None] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        tensor = self._delta[name]
        if name not in self._factors:
            limit, norm = self._limits.get(name), tensor_norm(tensor)
            self._factors[name] = (None if limit is None or norm <= limit
                                   else torch.tensor(limit / norm, dtype=tensor.dtype))
        factor = self._factors[name]
        return tensor if factor is None else tensor * factor

    def __iter__(self) -> Iterator[str]:
        return iter(self._delta)

    def __len__(self) -> int:
        return len(self._delta)


def clip_to_norms(delta: Delta, max_norms: Mapping[str, float]) -> ClippedDelta:
    """Scale down each tensor whose norm exceeds `max_norms[name]` (`ClippedDelta`)."""
    return ClippedDelta(delta, max_norms)


def median_norm_clip(deltas: Sequence[Delta], weights: Sequence[float] | None = None) -> list[ClippedDelta]:
    """Clip every delta per tensor to that tensor's (weighted) median norm over `deltas`."""
    medians = median_tensor_norms(deltas, weights)
    return [clip_to_norms(d, medians) for d in deltas]


COLDKEY_CAP = 1 / 3


def coldkey_capped_weights(coldkeys: Sequence[str], cap: float = COLDKEY_CAP,
                           base: Sequence[float] | None = None) -> list[float] | None:
    """Weights (summing to 1) for contributions from these coldkeys: in proportion to `base`
    (default equal; a collusion group's members share one contribution's weight), except that
    no coldkey's total exceeds max(cap, 1 / number of coldkeys); what a capped coldkey loses goes
    to the others in proportion to their base. None when every weight is equal (plain mean)."""
    base = [1.0] * len(coldkeys) if base is None else [float(b) for b in base]
    members: dict[str, float] = {}
    for ck, b in zip(coldkeys, base):
        members[ck] = members.get(ck, 0.0) + b
    limit = max(cap, 1 / len(members)) if members else 1.0
    capped: set[str] = set()
    while True:  # water-filling: cap the heaviest coldkeys until none of the rest is over
        free = sum(b for ck, b in members.items() if ck not in capped)
        each = (1 - limit * len(capped)) / free if free else 0.0
        over = {ck for ck, b in members.items() if ck not in capped and b * each > limit + 1e-12}
        if not over:
            break
        capped |= over
    if not capped and len(set(base)) <= 1:
        return None
    return [limit * b / members[ck] if ck in capped else each * b for ck, b in zip(coldkeys, base)]


def aggregate(
    accepted: Sequence[Delta], min_contributions: int = 2, coldkeys: Sequence[str] | None = None,
    base_weights: Sequence[float] | None = None,
) -> dict[str, torch.Tensor] | None:
    """Median-norm clip and the mean, both with the merge's weights (coldkey-capped,
    `coldkey_capped_weights`, in proportion to `base_weights`), summed in the given order. `coldkeys[i]` owns `accepted[i]`; None: every
    contribution its own.

    Returns None when fewer than `min_contributions` are accepted: the unit stays unchanged
    this round, so a lone attacker never steers it.
    """
    if len(accepted) < max(1, min_contributions):
        return None
    names = list(accepted[0].keys())
    for i, d in enumerate(accepted[1:], start=1):
        if set(d) != set(names):
            raise ValueError(f"accepted delta {i} has different tensor names than delta 0")
    owners = list(coldkeys) if coldkeys is not None else [str(i) for i in range(len(accepted))]
    weights = coldkey_capped_weights(owners, base=base_weights) \
        if coldkeys is not None or base_weights is not None else None
    clipped = median_norm_clip(accepted, weights)
    count = len(clipped)
    mean: dict[str, torch.Tensor] = {}
    for name in names:
        total = torch.zeros_like(clipped[0][name], dtype=torch.float32)
        if weights is None:  # equal weights: the sum, then one division (as before the cap)
            for d in clipped:
                total += d[name].float()
            mean[name] = total / count
        else:
            for d, w in zip(clipped, weights):
                total += d[name].float() * w
            mean[name] = total
    return mean
