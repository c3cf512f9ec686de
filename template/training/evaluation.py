"""Loss measurements for scoring: per-sequence losses and temporarily applied deltas."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from template.training.model import autocast_context, load_model_state


@torch.no_grad()
def per_sequence_loss(model: torch.nn.Module, tokens: torch.Tensor, batch_size: int = 16
                      ) -> torch.Tensor:
    """Mean next-token cross-entropy of each row of tokens [B, T] -> float32 [B] on CPU."""
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(f"tokens must be [B, T>=2], got {tuple(tokens.shape)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, tokens.shape[0], batch_size):
            batch = tokens[start:start + batch_size].to(device)
            with autocast_context(device):
                logits = model(input_ids=batch).logits
            ce = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), batch[:, 1:],
                                 reduction="none")
            out.append(ce.mean(dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def state_loss(model: torch.nn.Module, tokens: torch.Tensor) -> Callable[[dict[str, torch.Tensor]], float]:
    """A state's mean loss on `tokens` (`model` is left holding the last state asked about)."""
    def loss(state: dict[str, torch.Tensor]) -> float:
        load_model_state(model, state)
        return float(per_sequence_loss(model, tokens).mean())
    return loss


@contextmanager
def applied_delta(model: torch.nn.Module, delta: dict[str, torch.Tensor], scale: float
                  ) -> Iterator[torch.nn.Module]:
    """Inside the block the model holds theta - scale * delta; the exact theta comes back after."""
    params = dict(model.named_parameters())
    unknown = sorted(set(delta) - set(params))
    if unknown:
        raise KeyError(f"delta names unknown parameters: {unknown[:5]}")
    saved: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for name, d in delta.items():
                p = params[name]
                if tuple(d.shape) != tuple(p.shape):
                    raise ValueError(f"{name}: delta shape {tuple(d.shape)} != {tuple(p.shape)}")
                saved[name] = p.detach().clone()
                p.copy_((p.float() - scale * d.to(p.device, torch.float32)).to(p.dtype))
        yield model
    finally:
        with torch.no_grad():
            for name, original in saved.items():
                params[name].copy_(original)
