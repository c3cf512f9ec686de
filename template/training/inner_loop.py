"""The miner's inner loop: H AdamW steps on its assigned pages, then the pseudo-gradient."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import torch
from loguru import logger
from torch.distributed.tensor import DTensor

from protocol.recipe import Recipe
from template.training.train_step import clip_and_step, forward_backward


@dataclass
class InnerStats:
    loss_first: float
    loss_last: float
    tokens: int
    seconds: float
    steps: int = 0
    first_step_seconds: float = 0.0  # includes the round's one-off costs (optimizer state)
    optimizer_state: dict | None = field(default=None, repr=False)  # AdamW's, to carry over

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def lr_at(step: int, steps: int, lr: float, warmup: int, final_lr_frac: float, time_spent: float = 0.0) -> float:
    """Linear warmup, then cosine decay to lr * final_lr_frac at the last step, or sooner at the
    deadline: `time_spent` is the fraction of the training time used, and the decay follows
    whichever of steps and time is further along (a miner that runs out of time still anneals)."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    span = max(1, steps - warmup - 1)
    progress = min(1.0, max((step - warmup) / span, time_spent))
    return lr * (final_lr_frac + (1 - final_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def steps_for(recipe: Recipe, num_pages: int, batch_size: int) -> int:
    """The round's step count: H, or fewer when H steps would pass over the pages more than
    `max_passes` times (held-out loss rises once a miner memorises its pages)."""
    return max(1, min(recipe.inner_steps, int(recipe.max_passes * num_pages / batch_size)))


def batch_order(num_pages: int, steps: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """Page indices per step: reshuffled passes over all pages (several passes expected)."""
    gen = torch.Generator().manual_seed(seed)
    need = steps * batch_size
    order: list[torch.Tensor] = []
    for _ in range(-(-need // num_pages)):  # as many passes as the steps need
        order.append(torch.randperm(num_pages, generator=gen))
    flat = torch.cat(order)[:need]
    return list(flat.view(steps, batch_size))


def _make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float]) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    # Decay matrices only; norms and other vectors are left alone (standard LM practice).
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    # FSDP2's sharded parameters take the multi-tensor (foreach) kernels, the ones it is tested with.
    fused = all(p.is_cuda and not isinstance(p, DTensor) for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


class BatchShare(Protocol):
    """How processes of one host share each step's batch (`team.SharedBatch`)."""

    def step_loss(self, batch: torch.Tensor) -> torch.Tensor: ...  # this process's share: loss, backward
    def agree(self, stop: bool, late: bool, time_spent: float) -> tuple[bool, bool, float]: ...  # the first decides
    def total(self, loss: torch.Tensor) -> float: ...  # the shares' losses summed: the batch's mean


def train_inner(model: torch.nn.Module, tokens: torch.Tensor, recipe: Recipe, seed: int = 0,
                deadline: float | None = None, compile: bool = False, loss_mode: str = "auto",
                optimizer_state: dict | None = None, should_stop=None, share: BatchShare | None = None
                ) -> InnerStats:
    """Train `model` in place for the recipe's H AdamW steps (`steps_for`: at most `max_passes`
    passes) over the pages `tokens` [N, T] (batch, learning-rate schedule, weight decay, betas
    and gradient clip from `recipe`).

    `compile`: forward + loss + backward under torch.compile (`train_step.forward_backward`;
    the compiled step is kept on the model, so reusing the model reuses the compilation).
    `loss_mode`: dense or chunked LM loss (`loss.causal_lm_loss`); shards pass `chunked`.
    `optimizer_state`: AdamW moments from an earlier call on the same parameters (the returned
    `InnerStats.optimizer_state`) to continue from instead of zeros.

    `deadline` (time.time() seconds): stop early, keeping the steps done, rather than miss the
    round (a slow device still contributes what it managed); the learning rate decays by time as
    well as by steps, so the last steps before the deadline are annealed ones. `should_stop()`:
    checked before each step; true ends the loop (the work was called off).

    `share`: train as one of several processes (torchrun): `model` is the DDP/FSDP2-wrapped loss
    module, each step's batch is split among them, and the first process decides for all when to
    stop and how far the time-annealed schedule is. Without it (one process) nothing of that runs."""
    if tokens.ndim != 2 or tokens.shape[0] == 0:
        raise ValueError(f"tokens must be a non-empty [N, T] tensor, got {tuple(tokens.shape)}")
    device = next(model.parameters()).device
    tokens = tokens.to(device)
    batch_size = min(recipe.batch_size, tokens.shape[0])
    steps, lr = steps_for(recipe, tokens.shape[0], batch_size), recipe.learning_rate
    opt = _make_optimizer(model, lr, recipe.weight_decay, recipe.betas)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
        for group in opt.param_groups:  # the moments carry over; the settings are this round's recipe
            group.update(betas=recipe.betas, weight_decay=recipe.weight_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    fwd_bwd = share.step_loss if share is not None else forward_backward(model, compile, loss_mode)
    model.train()
    t0 = time.perf_counter()
    budget = None if deadline is None else max(deadline - time.time(), 1e-3)
    first_loss = last_loss = None  # device tensors: reading them each step would sync a GPU
    done, first_step_seconds, step_seconds = 0, 0.0, 0.0
    previous_loss, synced_at = None, t0
    steps_in_flight = 2 if device.type == "cuda" else 1
    # Indices go to the device once: a host->device copy per step would wait for the GPU.
    order = torch.stack(batch_order(tokens.shape[0], steps, batch_size, seed)).to(device)
    for step, idx in enumerate(order):
        stop = should_stop is not None and should_stop()
        # A step is not begun when it would end past the deadline (its time: the last one's; on
        # a GPU the step before may still be running).
        late = (not stop and deadline is not None and step > 0
                and time.time() + steps_in_flight * step_seconds >= deadline)
        time_spent = 0.0 if budget is None else (time.perf_counter() - t0) / budget
        if share is not None:  # every process takes the same step with the same learning rate
            stop, late, time_spent = share.agree(stop, late, time_spent)
        if stop:
            break
        if late:
            logger.debug(f"inner: deadline reached after {step}/{steps} steps")
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, recipe.warmup_steps, recipe.final_lr_frac, time_spent)
        opt.zero_grad(set_to_none=True)
        loss = fwd_bwd(tokens[idx])
        clip_and_step(opt, params, recipe.grad_clip)
        last_loss = loss.detach()
        if step == 0:
            first_loss = last_loss
            if device.type == "cuda":  # one wait a round, to time the first step apart
                torch.cuda.synchronize(device)
            first_step_seconds = time.perf_counter() - t0
        done = step + 1
        if deadline is not None:
            # Waiting for the step before this one keeps the host at most one step ahead of the
            # device (the deadline is checked against work done, not queued) without idling it.
            if previous_loss is not None:
                float(previous_loss)
                now = time.perf_counter()
                step_seconds, synced_at = now - synced_at, now
            previous_loss = last_loss
    read = share.total if share is not None else float
    loss_first, loss_last = (float("nan") if t is None else read(t) for t in (first_loss, last_loss))
    seconds = time.perf_counter() - t0  # after the float() reads: the device has finished
    stats = InnerStats(loss_first, loss_last, done * batch_size * tokens.shape[1], seconds, done,
                       first_step_seconds, opt.state_dict())
    logger.debug(f"inner: {steps} steps x {batch_size} x {tokens.shape[1]} on {tokens.shape[0]} "
                 f"pages, loss {loss_first:.3f} -> {loss_last:.3f}, {seconds:.1f}s "
                 f"({stats.tokens_per_second / 1e3:.1f}k tok/s)")
    return stats


@torch.no_grad()
def pseudo_gradient(base_state: dict[str, torch.Tensor], model: torch.nn.Module
                    ) -> dict[str, torch.Tensor]:
    """base - trained (fp32, CPU) for every trainable parameter."""
    delta: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name not in base_state:
            raise KeyError(f"base state has no parameter {name!r}")
        delta[name] = base_state[name].to("cpu", torch.float32) - p.detach().to("cpu", torch.float32)
    return delta
