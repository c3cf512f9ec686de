"""L2 norms that every machine computes bit for bit.

torch reductions split work by thread count and SIMD width, so their last bits differ
between machines; a clip factor built on them would break replay of the aggregate. Here the
squares (exact in float64 for float32 inputs) are summed by a fixed pairwise tree of
elementwise additions, whose order depends only on the tensor's size.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch


def sum_of_squares(tensor: torch.Tensor) -> float:
    x = tensor.detach().reshape(-1).double()
    n = x.numel()
    if n == 0:
        return 0.0
    size = 1 << (n - 1).bit_length()
    tree = torch.zeros(size, dtype=torch.float64, device=x.device)
    tree[:n] = x * x
    while size > 1:
        size //= 2
        tree = tree[:size] + tree[size : 2 * size]
    return float(tree[0])


def tensor_norm(tensor: torch.Tensor) -> float:
    """L2 norm of one tensor, identical on every machine."""
    return math.sqrt(sum_of_squares(tensor))


def delta_norm(delta: Mapping[str, torch.Tensor]) -> float:
    """Global L2 norm over every tensor of a delta (tensors summed in name order)."""
    return math.sqrt(math.fsum(sum_of_squares(delta[name]) for name in sorted(delta)))
