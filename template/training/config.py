"""Training knobs in one typed place; the defaults are the measured CPU demo settings."""
from __future__ import annotations

from dataclasses import dataclass, field

from template.training.compression import CompressionConfig


@dataclass(frozen=True)
class TrainingConfig:
    preset: str = "tiny"  # model shape, see model.PRESETS
    vocab_size: int = 1024  # byte-level BPE trained on the corpus
    page_len: int = 128  # tokens per page (= training sequence length)
    heldout_fraction: float = 0.08  # pages reserved for validators, never assigned
    pages_per_assignment: int = 48  # pages a miner trains on per round
    inner_steps: int = 30  # H: AdamW steps per round
    batch_size: int = 16  # pages per inner step
    lr: float = 3e-3  # inner AdamW peak lr
    warmup: int = 3  # inner-loop warmup steps, every round
    carry_optimizer_state: bool = True  # miners keep their AdamW moments between rounds
    final_lr_frac: float = 0.1  # cosine floor inside a round
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    outer_lr: float = 1.0  # plain averaging, no outer momentum (SparseLoCo)
    model_seed: int = 0  # round-0 weights come from (preset, vocab, seed)
    # Demo density 3.1% (top-128 of 4096, 70x): 8 rounds cut held-out loss 32.4%; the production
    # 0.78% (top-32, 275x) reaches 23.8% in 8 rounds (README.md in this folder).
    compression: CompressionConfig = field(default_factory=lambda: CompressionConfig(topk=128))


# The production-like contribution format (ALGORITHMS.md §7.3): 0.78% density, 2-bit, ~282x.
PRODUCTION_COMPRESSION = CompressionConfig(chunk=64, topk=32, bits=2, ef_beta=0.95)
