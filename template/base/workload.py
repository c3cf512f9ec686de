"""What miners and validators must agree on: model preset, tokenizer, pages, compression,
and the per-preset round defaults. Both sides build it from the same config and compare
`dataset_id` before trusting each other's page ids.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from protocol.messages import UnitOfWork
from template.config import DataConfig, RoundConfig
from template.training.compression import CompressionConfig
from template.training.corpus import load_hub_text
from template.training.config import TrainingConfig
from template.training.model import PRESETS, build_model, configure_torch_threads, load_model_state
from template.training.pages import PageStore, build_page_store


@dataclass(frozen=True)
class PresetDefaults:
    vocab_size: int
    page_len: int
    inner_steps: int
    batch_size: int
    learning_rate: float
    pages_per_miner: int
    compression: CompressionConfig
    warmup_steps: int = 0

    @classmethod
    def from_training_config(cls, cfg: TrainingConfig) -> "PresetDefaults":
        return cls(vocab_size=cfg.vocab_size, page_len=cfg.page_len, inner_steps=cfg.inner_steps,
                   batch_size=cfg.batch_size, learning_rate=cfg.lr, pages_per_miner=cfg.pages_per_assignment,
                   compression=cfg.compression, warmup_steps=cfg.warmup)


# tiny: the measured CPU demo settings (template/training/README.md: 8 rounds, 3 miners, 30.7% lower
# held-out loss with compression). Larger presets follow the DiLoCo defaults (H=30, top-32 2-bit).
PRESET_DEFAULTS: dict[str, PresetDefaults] = {
    "tiny": PresetDefaults.from_training_config(TrainingConfig()),
    "small": PresetDefaults(vocab_size=8192, page_len=512, inner_steps=30, batch_size=16, learning_rate=1e-3,
                            pages_per_miner=512, compression=CompressionConfig(chunk=64, topk=32, bits=2)),
    "124m": PresetDefaults(vocab_size=32768, page_len=1024, inner_steps=30, batch_size=32, learning_rate=6e-4,
                           pages_per_miner=1024, compression=CompressionConfig(chunk=64, topk=32, bits=2)),
    "1b": PresetDefaults(vocab_size=32768, page_len=2048, inner_steps=30, batch_size=32, learning_rate=3e-4,
                         pages_per_miner=1024, compression=CompressionConfig(chunk=64, topk=32, bits=2)),
}


@dataclass
class RoundPlan:
    """The resolved per-round training settings a validator sends in every TrainRequest."""

    inner_steps: int
    batch_size: int
    learning_rate: float
    pages_per_miner: int
    warmup_steps: int


@dataclass
class Workload:
    preset_name: str
    vocab_size: int
    pages: PageStore
    compression: CompressionConfig
    defaults: PresetDefaults

    @classmethod
    def build(cls, data: DataConfig, cache_dir: Path, torch_threads: int = 1) -> "Workload":
        if data.preset not in PRESETS:
            raise SystemExit(f"--data.preset {data.preset!r}: choose one of {sorted(PRESETS)}")
        configure_torch_threads(torch_threads)
        defaults = PRESET_DEFAULTS[data.preset]
        vocab = data.vocab_size or defaults.vocab_size
        page_len = data.page_len or defaults.page_len
        pages = build_page_store(cache_dir, vocab, page_len, text=corpus_text(data.corpus))
        return cls(data.preset, vocab, pages, defaults.compression, defaults)

    @property
    def dataset_id(self) -> str:
        return self.pages.digest

    @property
    def compression_id(self) -> str:
        c = self.compression
        return f"topk-ef/chunk{c.chunk}/k{c.topk}/b{c.bits}"

    def round_plan(self, rounds: RoundConfig) -> RoundPlan:
        d = self.defaults
        return RoundPlan(inner_steps=rounds.inner_steps or d.inner_steps, batch_size=rounds.batch_size or d.batch_size,
                         learning_rate=rounds.learning_rate or d.learning_rate,
                         pages_per_miner=rounds.pages_per_miner or d.pages_per_miner, warmup_steps=d.warmup_steps)

    def initial_model(self, seed: int, device: torch.device) -> torch.nn.Module:
        return build_model(self.preset_name, self.vocab_size, seed=seed, device=device)

    def model_from(self, state: dict[str, torch.Tensor], device: torch.device) -> torch.nn.Module:
        model = build_model(self.preset_name, self.vocab_size, seed=0, device=device)
        load_model_state(model, state)
        return model

    @property
    def max_shards(self) -> int:
        """Width shards split the KV heads, so there are at most that many."""
        return PRESETS[self.preset_name].n_kv_heads

    def capacity_gb(self, device: torch.device) -> float:
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory / 2**30
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


# Full-model training holds fp32 weights, gradients and two AdamW moments (16 bytes a parameter),
# activations, and the runtime itself (torch + transformers, ~0.5 GB measured on CPU).
TRAINING_BYTES_PER_PARAM = 16
RUNTIME_GB = 0.5
MAX_SHARDS = 8


def full_training_gb(preset_name: str, vocab_size: int, batch_size: int, page_len: int) -> float:
    preset = PRESETS[preset_name]
    params = preset.n_layers * (4 * preset.d_model ** 2 + 3 * preset.d_model * preset.d_ff) \
        + 2 * vocab_size * preset.d_model
    activations = batch_size * page_len * (preset.n_layers * 16 * preset.d_model + 2 * vocab_size) * 4
    return (params * TRAINING_BYTES_PER_PARAM + activations) / 2**30 + RUNTIME_GB


def unit_for(capacity_gb: float, required_gb: float, round_index: int, max_count: int = MAX_SHARDS) -> UnitOfWork:
    """The whole model when the miner's declared capacity holds it; else the smallest number of
    width shards whose share fits, at window `round_index % count` (`spread_windows` then places
    the round's shard miners). DESIGN.md "Shards": width slices measured better than layer ranges,
    and a shard's pay follows its measured gain."""
    if capacity_gb >= required_gb:
        return UnitOfWork()
    count = 2
    while count < min(MAX_SHARDS, max_count) and (required_gb - RUNTIME_GB) / count + RUNTIME_GB > capacity_gb:
        count *= 2
    return UnitOfWork(kind="shard", scheme="width", index=round_index % count, count=count)


def spread_windows(units: dict[str, UnitOfWork], round_index: int, peers_per_window: int = 2
                   ) -> dict[str, UnitOfWork]:
    """Spread the round's shard miners over as many windows as keep `peers_per_window` miners on
    each (peers on the same coordinates make the norm, duplicate and aggregation statistics
    work); the windows roll with the round (FedRolex) so every coordinate gets trained.

    Measured (bench/collective.py, tiny, K=4 quarter shards, 16 rounds): every miner on one
    window 1.21x full DiLoCo's loss, two windows of two miners 1.11x, four windows 1.05x.
    Miners are grouped in an order drawn from the round, so peers change every round."""
    out = dict(units)
    by_count: dict[int, list[str]] = {}
    for hotkey, unit in units.items():
        if unit.kind == "shard":
            by_count.setdefault(unit.count, []).append(hotkey)
    for count, hotkeys in by_count.items():
        groups = max(1, min(count, len(hotkeys) // max(1, peers_per_window)))
        ordered = sorted(hotkeys, key=lambda hk: hashlib.sha256(f"{round_index}/{hk}".encode()).digest())
        for i, hotkey in enumerate(ordered):
            index = (round_index + (i % groups) * count // groups) % count
            out[hotkey] = units[hotkey].model_copy(update={"index": index})
    return out


HUB_MAX_CHARS = 200_000_000


def corpus_text(corpus: str) -> str | None:
    """None: the offline Shakespeare default; `hub:<name>`: a `datasets` dataset (hub id, or a
    local .jsonl/.txt/.parquet file) with a `text` field, streamed once and cached as pages."""
    if corpus == "shakespeare":
        return None
    if corpus.startswith("hub:") and len(corpus) > 4:
        return load_hub_text(corpus[4:], split="train", text_field="text", max_chars=HUB_MAX_CHARS)
    raise SystemExit(f"--data.corpus {corpus!r}: expected 'shakespeare' or 'hub:<dataset name or file>'")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def initial_seed(netuid: int) -> int:
    """All validators start from the same weights: the init seed is a function of the subnet."""
    return int.from_bytes(hashlib.sha256(f"deai/init/{netuid}".encode()).digest()[:4], "little")
