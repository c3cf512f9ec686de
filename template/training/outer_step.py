"""The outer step: theta <- theta - lr * aggregated pseudo-gradient."""
from __future__ import annotations

import torch


@torch.no_grad()
def apply_outer_step(base_state: dict[str, torch.Tensor], aggregated_delta: dict[str, torch.Tensor],
                     outer_lr: float = 1.0) -> dict[str, torch.Tensor]:
    """New state; tensors without a delta are carried over unchanged (a shard's untouched part).

    Plain averaging with outer lr 1.0 and no momentum is the default (SparseLoCo: the miners'
    error feedback already acts as momentum; bench/collective.py measured it better than
    Nesterov 0.7/0.9, see bench/README.md).
    """
    unknown = sorted(set(aggregated_delta) - set(base_state))
    if unknown:
        raise KeyError(f"delta names tensors not in the state: {unknown[:5]}")
    new_state: dict[str, torch.Tensor] = {}
    for name, theta in base_state.items():
        delta = aggregated_delta.get(name)
        if delta is None:
            new_state[name] = theta.clone()
            continue
        if tuple(delta.shape) != tuple(theta.shape):
            raise ValueError(f"{name}: delta shape {tuple(delta.shape)} != {tuple(theta.shape)}")
        # fp32 arithmetic on CPU: elementwise, so bit-for-bit reproducible by any replayer.
        new_state[name] = (theta.to("cpu", torch.float32)
                           - outer_lr * delta.to("cpu", torch.float32)).to(theta.dtype)
    return new_state

