"""DiLoCo's outer optimizer (Nesterov SGD on pseudo-gradients): the arm bench/collective.py
measures plain averaging (`template.training.outer_step.apply_outer_step`) against."""
from __future__ import annotations

import torch

from template.training.outer_step import apply_outer_step


class NesterovOuterOptimizer:
    """Nesterov SGD with the aggregated delta as gradient, then the outer step."""

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
        """Tensors only, so it saves with checkpoint_bytes (the hyperparameters are the constructor's)."""
        return {name: buf.clone() for name, buf in sorted(self.buffers.items())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.buffers = {name: t.to("cpu", torch.float32).clone() for name, t in state.items()}
