"""What miners and validators must agree on: model, tokenizer, pages and recipe. Both sides
build it from the same settings and compare `dataset_id` (and the model's name, `preset_name`)
before trusting each other's page ids."""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from loguru import logger

from protocol.recipe import CompressionConfig, Recipe
from template.training.model import (PRESETS, ModelPreset, build_model, configure_torch_threads, empty_model,
                                     load_model_state, load_pretrained_model)
from template.training.page_stream import DEFAULT_MAX_TOKENS, streamed_page_store
from template.training.pages import DEFAULT_HELDOUT_FRACTION, PageStore, build_page_store
from template.training.presets import PRESET_SETTINGS
from template.training.pretrained import PretrainedSource, load_pretrained, width_shard_refusal
from template.training.text_stream import DatasetError, DatasetSource
from template.training.tokenizer import load_pretrained_tokenizer

SHAKESPEARE = "shakespeare"
HUB_PREFIX = "hub:"


CHECKPOINT_HEADER_ALLOWANCE = 64 * 1024


@dataclass
class Workload:
    """What this node trains on: the model, the page store, and its recipe (the preset's, with
    the operator's overrides; a round's lead sends the recipe miners follow).

    `preset_name` is the model's name on the wire: a preset's name, or for a pretrained model
    `pt-` and its initial weights' content hash (`pretrained.model_id`). `model` is its
    architecture (None: the preset's); `pretrained` where its initial weights come from."""

    preset_name: str
    vocab_size: int
    pages: PageStore
    recipe: Recipe
    model: ModelPreset | None = None
    pretrained: PretrainedSource | None = None

    @classmethod
    def build(cls, preset: str, corpus: str, cache_dir: Path, vocab_size: int = 0, page_len: int = 0,
              recipe_overrides: dict | None = None, torch_threads: int = 1,
              pretrained: PretrainedSource | None = None, dataset: DatasetSource | None = None,
              max_tokens: int = DEFAULT_MAX_TOKENS) -> "Workload":
        """`preset` names the recipe (and, without `pretrained`, the model). With `pretrained`,
        the model, its tokenizer and vocabulary are the pretrained model's; the page length is
        the preset's (at most the model's context). `corpus`: `shakespeare`, or `hub:<name>`
        read as `dataset` (its subset, split, text field and revision) through a stream."""
        if preset not in PRESETS:
            raise SystemExit(f"--data.preset {preset!r}: choose one of {sorted(PRESETS)}")
        configure_torch_threads(torch_threads)
        settings = PRESET_SETTINGS[preset]
        try:
            recipe = settings.recipe.with_overrides(**(recipe_overrides or {}))
        except ValueError as exc:
            raise SystemExit(f"--recipe.*: {exc}") from exc
        page_len = page_len or settings.page_len
        tokenizer, architecture, name = None, None, preset
        if pretrained is not None:
            loaded = _load(pretrained)
            architecture, name = loaded.architecture, loaded.architecture.name
            vocab_size = int(loaded.model.config.vocab_size)
            if architecture.max_seq_len and page_len > architecture.max_seq_len:
                page_len = architecture.max_seq_len
            tokenizer = load_pretrained_tokenizer(pretrained.name_or_path, pretrained.revision)
            logger.info(f"model: {pretrained} ({architecture.model_type}, {sum(t.numel() for t in loaded.state.values()):,} "
                        f"params, vocab {vocab_size}) is {name}")
            del loaded
        vocab = vocab_size or settings.vocab_size
        try:
            pages = _pages(corpus, cache_dir, vocab, page_len, tokenizer, dataset, max_tokens)
        except DatasetError as exc:
            raise SystemExit(f"--data.corpus {corpus}: {exc}") from exc
        return cls(name, vocab, pages, recipe, architecture, pretrained)

    @property
    def compression(self) -> CompressionConfig:
        return self.recipe.compression

    @property
    def dataset_id(self) -> str:
        return self.pages.digest

    @property
    def architecture(self) -> ModelPreset:
        """The model's shape (what shards are cut from and what memory estimates read)."""
        return self.model or PRESETS[self.preset_name]

    def initial_model(self, seed: int, device: torch.device) -> torch.nn.Module:
        """The round -1 checkpoint: the pretrained weights, or the preset initialised from `seed`."""
        if self.pretrained is not None:
            return load_pretrained_model(self.pretrained.name_or_path, device, self.pretrained.revision)
        return build_model(self.preset_name, self.vocab_size, seed=seed, device=device)

    def model_from(self, state: dict[str, torch.Tensor], device: torch.device) -> torch.nn.Module:
        if self.model is not None:
            model = empty_model(self.model, self.vocab_size, device)
        else:
            model = build_model(self.preset_name, self.vocab_size, seed=0, device=device)
        load_model_state(model, state)
        return model

    @functools.cached_property
    def checkpoint_size_bound(self) -> int:
        """The most bytes a checkpoint of this model can take (its fp32 tensors, and room for the
        header): a base checkpoint streamed larger is cut off before it costs more."""
        with torch.device("meta"):
            model = empty_model(self.model, self.vocab_size, "meta") if self.model is not None \
                else build_model(self.preset_name, self.vocab_size, seed=0, device="meta")
        tensors = list(model.named_parameters())
        return sum(p.numel() * 4 for _, p in tensors) + CHECKPOINT_HEADER_ALLOWANCE + 256 * len(tensors)

    @property
    def shard_refusal(self) -> str | None:
        """Why no width shard can be cut from this model (None: they can)."""
        return width_shard_refusal(self.architecture)

    @property
    def max_shards(self) -> int:
        """Width shards split the KV heads, so there are at most that many (1: none)."""
        return 1 if self.shard_refusal else self.architecture.n_kv_heads

    def capacity_gb(self, device: torch.device) -> float:
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory / 2**30
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def _load(source: PretrainedSource):
    try:
        return load_pretrained(source)
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"--model.name_or_path {source}: cannot load a causal LM: {exc}") from exc


def _pages(corpus: str, cache_dir: Path, vocab: int, page_len: int, tokenizer, dataset: DatasetSource | None,
           max_tokens: int) -> PageStore:
    """`shakespeare`: the offline default corpus; `hub:<name>`: a dataset read as a stream."""
    if corpus == SHAKESPEARE:
        return build_page_store(cache_dir, vocab, page_len, tokenizer=tokenizer)
    if corpus.startswith(HUB_PREFIX) and len(corpus) > len(HUB_PREFIX):
        source = dataset or DatasetSource(corpus[len(HUB_PREFIX):])
        if not source.revision and source.local_files() is None:
            logger.warning(f"dataset {source.name} has no --data.revision: nodes reading it at different times "
                           "may get different pages (their work is then refused as a dataset mismatch)")
        return streamed_page_store(cache_dir, source, page_len, vocab, DEFAULT_HELDOUT_FRACTION, max_tokens,
                                   tokenizer)
    raise SystemExit(f"--data.corpus {corpus!r}: expected 'shakespeare' or 'hub:<dataset name, file or folder>'")


def initial_seed(netuid: int) -> int:
    """All validators start from the same weights: the init seed is a function of the subnet."""
    return int.from_bytes(hashlib.sha256(f"deai/init/{netuid}".encode()).digest()[:4], "little")
