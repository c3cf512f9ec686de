"""One inner AdamW step, eager or under torch.compile.

On CUDA the miner trains with bf16 autocast, SDPA attention (the preset's config), fused AdamW
(`_make_optimizer`) and, by default, forward + loss + backward compiled with torch.compile; the
optimizer step stays eager (fused AdamW is already one kernel per parameter group).

Compiled steps are cached per model object (and loss mode): a miner that keeps its model
between rounds and loads each new base into it in place (`load_model_state`) compiles once,
not every round.

Gradient clipping with fused AdamW is folded into the optimizer's kernel (`clip_and_step`).
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


def forward_backward(model: torch.nn.Module, compile: bool, loss_mode: str = "auto"
                     ) -> Callable[[torch.Tensor], torch.Tensor]:
    """batch [B, T] -> detached loss, gradients accumulated into the trainable parameters.
    `loss_mode`: see `loss.causal_lm_loss`."""
    cache = getattr(model, _CACHE_ATTR, None)
    if compile and cache is not None and loss_mode in cache:
        return cache[loss_mode]
    device = next(model.parameters()).device

    def fwd_bwd(batch: torch.Tensor) -> torch.Tensor:
        with autocast_context(device):
            loss = causal_lm_loss(model, batch, loss_mode)
        loss.backward()
        return loss.detach()

    if not compile:
        return fwd_bwd
    logger.info("inner loop: compiling the training step with torch.compile (first step is slow)")
    fn = torch.compile(fwd_bwd, dynamic=False)
    if cache is None:
        cache = {}
        object.__setattr__(model, _CACHE_ATTR, cache)
    cache[loss_mode] = fn
    return fn


def uses_fused_adamw(opt: torch.optim.Optimizer) -> bool:
    return isinstance(opt, (torch.optim.Adam, torch.optim.AdamW)) and all(g.get("fused") for g in opt.param_groups)


def clip_and_step(opt: torch.optim.Optimizer, params: list[torch.Tensor], max_norm: float) -> None:
    """Clip the gradients' global norm to `max_norm` (as `clip_grad_norm_`), then step.

    With fused (Adam)AdamW the clip costs no pass of its own over the gradients: the kernel
    divides each gradient by the optimizer's `grad_scale` (the tensor AMP's GradScaler uses
    to unscale), which is set to norm / max_norm when that exceeds 1."""
    if max_norm <= 0:
        opt.step()
        return
    if not uses_fused_adamw(opt):
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        opt.step()
        return
    norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    # clip_grad_norm_ multiplies by min(1, max_norm / (norm + 1e-6)); this divides by its inverse.
    opt.grad_scale = ((norm + 1e-6) / max_norm).clamp(min=1.0).float()
    try:
        opt.step()
    finally:
        del opt.grad_scale
