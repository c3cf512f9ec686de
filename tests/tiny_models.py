"""Tiny random-weight models of several transformers families, saved with save_pretrained (with
a BPE tokenizer trained on the fixture text) so tests load them through --model.name_or_path
exactly as a hub id would be loaded, with no hub access."""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import (AutoModelForCausalLM, GPTNeoXConfig, LlamaConfig, MistralConfig, Qwen2Config,
                          Qwen3Config)

from template.training.tokenizer import train_bpe_tokenizer
from tests.fixture_text import fixture_text

TOKENIZER_VOCAB, MODEL_VOCAB = 300, 320  # a model's vocabulary may be larger than its tokenizer's
FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gpt_neox")
SHARDABLE = ("llama", "mistral", "qwen2", "qwen3")


def tiny_config(family: str, tie: bool = False, vocab: int = MODEL_VOCAB):
    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=256, tie_word_embeddings=tie)
    if family == "gpt_neox":
        return GPTNeoXConfig(**common)
    config_class = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config}[family]
    extra = {"head_dim": 32} if family == "qwen3" else {}  # Qwen3's head size is not hidden / heads
    return config_class(num_key_value_heads=2, **common, **extra)


def save_tiny_model(folder: Path, family: str = "llama", tie: bool = False, dtype: torch.dtype = torch.float32,
                    seed: int = 0, model: torch.nn.Module | None = None) -> Path:
    """`model` (or a new random one of `family`) and the fixture tokenizer, saved to `folder`."""
    if model is None:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(tiny_config(family, tie), dtype=torch.float32)
    model.to(dtype).save_pretrained(folder)
    train_bpe_tokenizer(fixture_text(1500), TOKENIZER_VOCAB).save_pretrained(folder)
    return folder


def pretrained_on_shakespeare(folder: Path, cache_dir: Path, family: str = "qwen2", steps: int = 60) -> Path:
    """A model of the tiny preset's size (Qwen2 by default: tied embeddings, q/k/v biases)
    pretrained for `steps` AdamW steps on the Shakespeare pages, saved with save_pretrained with its
    own tokenizer (the corpus BPE, vocab 1024): a stand-in for a hub checkpoint."""
    from template.training.corpus import load_corpus_text
    from template.training.inner_loop import train_inner
    from template.training.pages import build_page_store
    from template.training.presets import PRESET_SETTINGS
    from template.training.tokenizer import build_tokenizer

    settings = PRESET_SETTINGS["tiny"]
    tokenizer = build_tokenizer(cache_dir, load_corpus_text(cache_dir), settings.vocab_size)
    pages = build_page_store(cache_dir, settings.vocab_size, settings.page_len, tokenizer=tokenizer)
    config = tiny_config(family, tie=True, vocab=settings.vocab_size)
    config.hidden_size, config.intermediate_size, config.max_position_embeddings = 128, 384, 256
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    recipe = settings.recipe.with_overrides(inner_steps=steps, batch_size=16, learning_rate=3e-3, warmup_steps=5)
    train_inner(model, pages.pages(pages.train_ids[:512]), recipe, seed=0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
