"""The language-model loss every trainer and scorer uses."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# Above this many logits per batch the loss is computed in sequence chunks, each recomputed in
# the backward: full-vocabulary logits otherwise dominate training memory at long sequences.
# The recompute costs one more LM-head forward, so a GPU with room to spare for the logits
# (fp32 logits and their gradient within a quarter of its memory) keeps the faster dense loss.
CHUNKED_LOSS_MIN_LOGITS = 32 * 2**20
GPU_LOGITS_MEMORY_FRACTION = 1 / 4
LOSS_CHUNK_TOKENS = 2048


def chunk_threshold(device: torch.device) -> int:
    """Logit count above which `causal_lm_loss` chunks on this device."""
    if device.type != "cuda":
        return CHUNKED_LOSS_MIN_LOGITS
    total = torch.cuda.get_device_properties(device).total_memory
    return max(CHUNKED_LOSS_MIN_LOGITS, int(total * GPU_LOGITS_MEMORY_FRACTION) // 8)


def causal_lm_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over a [B, T] batch of token ids."""
    vocab = model.lm_head.weight.shape[0] if hasattr(model, "lm_head") and hasattr(model.lm_head, "weight") \
        else model.config.vocab_size
    if batch.numel() * vocab < chunk_threshold(batch.device) or not hasattr(model, "model"):
        logits = model(input_ids=batch).logits
        return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                               batch[:, 1:].reshape(-1))
    hidden = model.model(input_ids=batch).last_hidden_state[:, :-1].reshape(-1, model.config.hidden_size)
    targets = batch[:, 1:].reshape(-1)

    def chunk_loss(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model.lm_head(h).float(), t, reduction="sum")

    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), LOSS_CHUNK_TOKENS):
        end = start + LOSS_CHUNK_TOKENS
        total = total + checkpoint(chunk_loss, hidden[start:end], targets[start:end], use_reentrant=False)
    return total / targets.numel()
