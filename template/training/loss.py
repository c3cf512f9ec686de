"""The language-model loss every trainer uses: dense, or chunked with the gradient fused in.

Full-vocabulary logits dominate training memory at long sequences (124m at 32 x 1024 tokens:
1.07G logits). The chunked loss (`LinearCrossEntropy`) never holds them: it walks the tokens
in chunks, and for each computes the head's logits, the loss, and at once the gradients of the
hidden states and of the head weight (softmax - one-hot), keeping only those. The backward
then only scales them. Same FLOPs as the dense loss (no recomputed head), peak memory of one
chunk's logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_MODES = ("auto", "dense", "chunked")
# `auto` chunks above this many logits per batch; a GPU with room to spare for them (fp32
# logits and their gradient within a quarter of its memory) keeps the dense loss.
CHUNKED_LOSS_MIN_LOGITS = 32 * 2**20
GPU_LOGITS_MEMORY_FRACTION = 1 / 4
LOSS_CHUNK_TOKENS = 2048


def chunk_threshold(device: torch.device) -> int:
    """Logit count above which the `auto` loss chunks on this device."""
    if device.type != "cuda":
        return CHUNKED_LOSS_MIN_LOGITS
    total = torch.cuda.get_device_properties(device).total_memory
    return max(CHUNKED_LOSS_MIN_LOGITS, int(total * GPU_LOGITS_MEMORY_FRACTION) // 8)


def _compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """What autocast would run the LM head in (bf16 under CUDA autocast, else unchanged)."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


class LinearCrossEntropy(torch.autograd.Function):
    """sum over tokens of cross_entropy(hidden @ weight.T, targets), chunked over tokens, with
    both gradients computed in the forward (inputs stay in their dtype; matmuls in `dtype`)."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                dtype: torch.dtype, chunk: int) -> torch.Tensor:
        w = weight.to(dtype)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if weight.requires_grad else None
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, targets.numel(), chunk):
            h, t = hidden[start:start + chunk].to(dtype), targets[start:start + chunk]
            logits = (h @ w.T).float()
            lse = torch.logsumexp(logits, dim=-1)
            total = total + (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            g = torch.exp(logits - lse[:, None])
            g = g.scatter_add(1, t[:, None], g.new_full((t.numel(), 1), -1.0)).to(dtype)
            grad_hidden[start:start + chunk] = (g @ w).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight = grad_weight + (g.T @ h).float()
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        grad_w = None if grad_weight is None else (grad_weight * grad_total).to(ctx.weight_dtype)
        return grad_hidden * grad_total, grad_w, None, None, None


def head_weight(model: torch.nn.Module) -> torch.Tensor | None:
    """The LM head's [V, d] weight (a width shard's is assembled from its row slices)."""
    head = getattr(model, "lm_head", None)
    if isinstance(head, torch.nn.Linear) and head.bias is None:
        return head.weight
    table = getattr(head, "table", None)
    return table.weight() if table is not None else None


def uses_chunked_loss(mode: str, batch: torch.Tensor, vocab: int) -> bool:
    if mode not in LOSS_MODES:
        raise ValueError(f"loss mode must be one of {LOSS_MODES}, got {mode!r}")
    return mode == "chunked" or (mode == "auto" and batch.numel() * vocab >= chunk_threshold(batch.device))


def causal_lm_loss(model: torch.nn.Module, batch: torch.Tensor, mode: str = "auto") -> torch.Tensor:
    """Mean next-token cross-entropy over a [B, T] batch of token ids.

    `mode`: `dense` (HF forward to logits), `chunked` (`LinearCrossEntropy`), `auto` (chunked
    when the batch's logits would crowd the device, `chunk_threshold`). A model without a plain
    decoder + bias-free head, or a call without autograd, takes the dense loss."""
    chunked = uses_chunked_loss(mode, batch, model.config.vocab_size)
    weight = head_weight(model) if chunked and torch.is_grad_enabled() else None
    if weight is None or not hasattr(model, "model"):
        logits = model(input_ids=batch).logits
        return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                               batch[:, 1:].reshape(-1))
    hidden = model.model(input_ids=batch).last_hidden_state[:, :-1].reshape(-1, weight.shape[1])
    targets = batch[:, 1:].reshape(-1)
    dtype = _compute_dtype(batch.device, hidden.dtype)
    total = LinearCrossEntropy.apply(hidden, weight, targets, dtype, LOSS_CHUNK_TOKENS)
    return total / targets.numel()
