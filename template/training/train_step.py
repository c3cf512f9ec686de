"""One inner AdamW step, eager or under torch.compile.

On CUDA the miner trains with bf16 autocast, SDPA attention (the preset's config), fused AdamW
(`_make_optimizer`) and, by default, forward + loss + backward compiled with torch.compile; the
optimizer step stays eager (fused AdamW is already one kernel per parameter group).

Compiled steps are cached per model object: a miner that keeps its model between rounds and
loads each new base into it in place (`load_model_state`) compiles once, not every round.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from loguru import logger

from template.training.loss import causal_lm_loss
from template.training.model import autocast_context

COMPILE_MODES = ("auto", "on", "off")
_CACHE_ATTR = "_deai_compiled_step"  # on the model itself, so the step dies with the model


def should_compile(mode: str, device: torch.device) -> bool:
    """`auto` compiles on CUDA only: on a CPU the 15-35 s of compilation rarely pays back
    within a round (bench/README.md has the CPU figures)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def forward_backward(model: torch.nn.Module, compile: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """batch [B, T] -> detached loss, gradients accumulated into the trainable parameters."""
    cached = getattr(model, _CACHE_ATTR, None)
    if compile and cached is not None:
        return cached
    device = next(model.parameters()).device

    def fwd_bwd(batch: torch.Tensor) -> torch.Tensor:
        with autocast_context(device):
            loss = causal_lm_loss(model, batch)
        loss.backward()
        return loss.detach()

    if not compile:
        return fwd_bwd
    logger.info("inner loop: compiling the training step with torch.compile (first step is slow)")
    fn = torch.compile(fwd_bwd, dynamic=False)
    object.__setattr__(model, _CACHE_ATTR, fn)
    return fn
