"""The outer step: theta <- theta - lr * aggregated pseudo-gradient."""
from __future__ import annotations

import torch


@torch.no_grad()
def apply_outer_step(base_state: dict[str, torch.Tensor], aggregated_delta: dict[str, torch.Tensor],
                     outer_lr: float = 1.0) -> dict[str, torch.Tensor]:
    """New state; tensors without a delta are carried over unchanged (a shard's untouched part).

    Plain averaging with outer lr 1.0 and no momentum is the default (SparseLoCo: the miners'
    error feedback already acts as momentum; DESIGN.md measured it better than Nesterov here).
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


class NesterovOuterOptimizer:
    """DiLoCo's outer optimizer (Nesterov SGD on pseudo-gradients), kept for benchmarks."""

    def __init__(self, lr: float = 0.7, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum
        self.buffers: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def step(self, base_state: dict[str, torch.Tensor], aggregated_delta: dict[str, torch.Tensor]
             ) -> dict[str, torch.Tensor]:
        """Same update rule as torch.optim.SGD(nesterov=True) with the delta as gradient."""
        effective: dict[str, torch.Tensor] = {}
        for name, delta in aggregated_delta.items():
            d = delta.to("cpu", torch.float32)
            buf = self.buffers.get(name)
            buf = d.clone() if buf is None else buf.mul_(self.momentum).add_(d)
            self.buffers[name] = buf
            effective[name] = d + self.momentum * buf
        return apply_outer_step(base_state, effective, self.lr)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only, so it saves with checkpoint_bytes (hyperparameters live in config)."""
        return {name: buf.clone() for name, buf in sorted(self.buffers.items())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.buffers = {name: t.to("cpu", torch.float32).clone() for name, t in state.items()}
