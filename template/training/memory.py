"""How much memory full-model training takes: what validators size units of work by and what a
torchrun miner picks its engine by (DDP when one device holds it, else FSDP2)."""
from __future__ import annotations

from template.training.model import PRESETS, ModelPreset

# Full-model training holds fp32 weights, gradients and two AdamW moments (16 bytes a parameter),
# activations, and the runtime itself (torch + transformers, ~0.5 GB measured on CPU).
TRAINING_BYTES_PER_PARAM = 16
RUNTIME_GB = 0.5


def full_training_gb(architecture: ModelPreset | str, vocab_size: int, batch_size: int, page_len: int) -> float:
    preset = PRESETS[architecture] if isinstance(architecture, str) else architecture
    params = preset.n_layers * (4 * preset.d_model ** 2 + 3 * preset.d_model * preset.d_ff) \
        + 2 * vocab_size * preset.d_model
    activations = batch_size * page_len * (preset.n_layers * 16 * preset.d_model + 2 * vocab_size) * 4
    return (params * TRAINING_BYTES_PER_PARAM + activations) / 2**30 + RUNTIME_GB
