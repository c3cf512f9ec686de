"""What miners and validators must agree on: model preset, tokenizer, pages and recipe. Both
sides build it from the same settings and compare `dataset_id` before trusting each other's
page ids."""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from protocol.recipe import CompressionConfig, Recipe
from template.training.corpus import load_hub_text
from template.training.model import PRESETS, build_model, configure_torch_threads, load_model_state
from template.training.pages import PageStore, build_page_store
from template.training.presets import PRESET_SETTINGS


CHECKPOINT_HEADER_ALLOWANCE = 64 * 1024


@dataclass
class Workload:
    """What this node trains on: the preset's model, the page store, and its recipe (the
    preset's, with the operator's overrides; a round's lead sends the recipe miners follow)."""

    preset_name: str
    vocab_size: int
    pages: PageStore
    recipe: Recipe

    @classmethod
    def build(cls, preset: str, corpus: str, cache_dir: Path, vocab_size: int = 0, page_len: int = 0,
              recipe_overrides: dict | None = None, torch_threads: int = 1) -> "Workload":
        if preset not in PRESETS:
            raise SystemExit(f"--data.preset {preset!r}: choose one of {sorted(PRESETS)}")
        configure_torch_threads(torch_threads)
        settings = PRESET_SETTINGS[preset]
        try:
            recipe = settings.recipe.with_overrides(**(recipe_overrides or {}))
        except ValueError as exc:
            raise SystemExit(f"--recipe.*: {exc}") from exc
        vocab = vocab_size or settings.vocab_size
        pages = build_page_store(cache_dir, vocab, page_len or settings.page_len, text=corpus_text(corpus))
        return cls(preset, vocab, pages, recipe)

    @property
    def compression(self) -> CompressionConfig:
        return self.recipe.compression

    @property
    def dataset_id(self) -> str:
        return self.pages.digest

    def initial_model(self, seed: int, device: torch.device) -> torch.nn.Module:
        return build_model(self.preset_name, self.vocab_size, seed=seed, device=device)

    def model_from(self, state: dict[str, torch.Tensor], device: torch.device) -> torch.nn.Module:
        model = build_model(self.preset_name, self.vocab_size, seed=0, device=device)
        load_model_state(model, state)
        return model

    @functools.cached_property
    def checkpoint_size_bound(self) -> int:
        """The most bytes a checkpoint of this model can take (its fp32 tensors, and room for the
        header): a base checkpoint streamed larger is cut off before it costs more."""
        with torch.device("meta"):
            model = build_model(self.preset_name, self.vocab_size, seed=0, device="meta")
        tensors = list(model.named_parameters())
        return sum(p.numel() * 4 for _, p in tensors) + CHECKPOINT_HEADER_ALLOWANCE + 256 * len(tensors)

    @property
    def max_shards(self) -> int:
        """Width shards split the KV heads, so there are at most that many."""
        return PRESETS[self.preset_name].n_kv_heads

    def capacity_gb(self, device: torch.device) -> float:
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory / 2**30
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


HUB_MAX_CHARS = 200_000_000


def corpus_text(corpus: str) -> str | None:
    """None: the offline Shakespeare default; `hub:<name>`: a `datasets` dataset (hub id, or a
    local .jsonl/.txt/.parquet file) with a `text` field, streamed once and cached as pages."""
    if corpus == "shakespeare":
        return None
    if corpus.startswith("hub:") and len(corpus) > 4:
        return load_hub_text(corpus[4:], split="train", text_field="text", max_chars=HUB_MAX_CHARS)
    raise SystemExit(f"--data.corpus {corpus!r}: expected 'shakespeare' or 'hub:<dataset name or file>'")


def initial_seed(netuid: int) -> int:
    """All validators start from the same weights: the init seed is a function of the subnet."""
    return int.from_bytes(hashlib.sha256(f"deai/init/{netuid}".encode()).digest()[:4], "little")
