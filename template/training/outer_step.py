"""The outer step: theta <- theta - lr * aggregated pseudo-gradient, and the lead's choice of its size."""
from __future__ import annotations

from collections.abc import Callable, Sequence

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


# Fractions of the recipe's outer lr the lead tries, largest first. An average of updates that
# each help at their share can still overshoot when stepped at full size: in the live runs the
# fourth round's merge raised held-out loss 5.85 -> 6.46 at 1.0 and lowered it to 5.74 at 0.25.
OUTER_STEP_FRACTIONS = (1.0, 0.75, 0.5, 0.25)


def measured_outer_step(base_state: dict[str, torch.Tensor], aggregated_delta: dict[str, torch.Tensor],
                        outer_lr: float, loss_of: Callable[[dict[str, torch.Tensor]], float],
                        fractions: Sequence[float] = OUTER_STEP_FRACTIONS
                        ) -> tuple[float, dict[str, torch.Tensor], dict[float, float]]:
    """The outer step at the fraction of `outer_lr` whose state has the lowest `loss_of` (a tie
    goes to the larger step): the lr taken, the new state and the loss of every fraction tried.
    The lr goes into the round's record, so a replay takes the same step without measuring."""
    losses: dict[float, float] = {}
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    for fraction in sorted(set(fractions), reverse=True):
        state = apply_outer_step(base_state, aggregated_delta, outer_lr * fraction)
        losses[fraction] = loss_of(state)
        if best is None or losses[fraction] < losses[best[0]]:
            best = (fraction, state)
    if best is None:
        raise ValueError("no outer step fraction to try")
    return outer_lr * best[0], best[1], losses
