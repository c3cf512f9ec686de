"""Each model preset's data shape and training recipe: the one place their defaults live.

tiny is the CPU demo (3 miners, 8 rounds: about 33% lower held-out loss with compression); H=30
is 5 passes over its 96 pages (10 passes over 48 made honest updates hurt held-out loss from about
round 11);
the larger presets follow the DiLoCo defaults (H=30) at the production density (top-32 of
4096, 2-bit).
"""
from __future__ import annotations

from dataclasses import dataclass

from protocol.recipe import CompressionConfig, Recipe

PRODUCTION_COMPRESSION = CompressionConfig(chunk=64, topk=32, bits=2, ef_beta=0.95)


@dataclass(frozen=True)
class PresetSettings:
    vocab_size: int  # byte-level BPE trained on the corpus
    page_len: int  # tokens per page (= training sequence length)
    recipe: Recipe


PRESET_SETTINGS: dict[str, PresetSettings] = {
    "tiny": PresetSettings(1024, 128, Recipe(inner_steps=30, batch_size=16, learning_rate=3e-3, warmup_steps=3,
                                             pages_per_miner=96, compression=CompressionConfig(topk=128))),
    "small": PresetSettings(8192, 512, Recipe(inner_steps=30, batch_size=16, learning_rate=1e-3,
                                              pages_per_miner=512, compression=PRODUCTION_COMPRESSION)),
    "124m": PresetSettings(32768, 1024, Recipe(inner_steps=30, batch_size=32, learning_rate=6e-4,
                                               pages_per_miner=1024, compression=PRODUCTION_COMPRESSION)),
    "1b": PresetSettings(32768, 2048, Recipe(inner_steps=30, batch_size=32, learning_rate=3e-4,
                                             pages_per_miner=1024, compression=PRODUCTION_COMPRESSION)),
}
