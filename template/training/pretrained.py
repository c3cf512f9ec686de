"""The subnet's model from a pretrained checkpoint (`--model.name_or_path`, `--model.revision`).

Any `AutoModelForCausalLM` works for whole-model training: rounds exchange its parameters by
name (compression, scoring and aggregation never look inside). Its identity on the wire is a
content hash of its initial weights (`model_id`), which is also the validator's initial
checkpoint hash: a miner that loaded other weights (another revision, a damaged download)
refuses the work orders instead of training the wrong model. Width shards are cut only from
architectures with the Llama layout (`WIDTH_SHARD_FAMILIES`); `width_shard_refusal` says why
another cannot be.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

from template.training.checkpoint import state_hash
from template.training.model import ModelPreset, load_pretrained_model, model_state

# Families whose decoder layers are Llama's (q/k/v/o projections by head, gated FFN, RMSNorms,
# model.embed_tokens / lm_head): `shards._width_plan` knows how to cut every parameter of these.
WIDTH_SHARD_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
MODEL_ID_PREFIX = "pt-"


@dataclass(frozen=True)
class PretrainedSource:
    """Where the weights come from: a hub id or a local save_pretrained folder, and for a hub
    id the revision (commit, tag or branch; "" for the default branch, which may move)."""

    name_or_path: str
    revision: str = ""

    def __str__(self) -> str:
        return self.name_or_path + (f"@{self.revision}" if self.revision else "")


def _kwargs(source: PretrainedSource) -> dict:
    return {"revision": source.revision} if source.revision else {}


def architecture_of(config: PretrainedConfig, name: str) -> ModelPreset:
    """The shape of a pretrained model's architecture, with its whole config kept."""
    n_heads = int(getattr(config, "num_attention_heads", 1))
    d_model = int(config.hidden_size)
    head_dim = getattr(config, "head_dim", None) or d_model // n_heads
    fields = json.loads(config.to_json_string(use_diff=False))
    fields["use_cache"] = False  # training never caches keys and values
    return ModelPreset(
        name=name, n_layers=int(config.num_hidden_layers), d_model=d_model, n_heads=n_heads,
        n_kv_heads=int(getattr(config, "num_key_value_heads", None) or n_heads),
        d_ff=int(getattr(config, "intermediate_size", None) or 4 * d_model),
        max_seq_len=int(getattr(config, "max_position_embeddings", 0) or 0),
        tie_embeddings=bool(getattr(config, "tie_word_embeddings", False)), head_dim=int(head_dim),
        hf_config=json.dumps(fields, sort_keys=True))


def pretrained_architecture(source: PretrainedSource) -> ModelPreset:
    """The architecture alone (config.json, no weights): enough to cut shards or replay a round."""
    config = AutoConfig.from_pretrained(source.name_or_path, **_kwargs(source))
    return architecture_of(config, str(source))


def model_id(state: dict[str, torch.Tensor]) -> str:
    """A pretrained model's name on the wire: its initial weights' content hash (32 hex digits of
    `checkpoint.state_hash`, the validator's initial checkpoint hash)."""
    return MODEL_ID_PREFIX + state_hash(state)[:32]


@dataclass
class LoadedPretrained:
    model: PreTrainedModel
    architecture: ModelPreset  # named by model_id
    state: dict[str, torch.Tensor]  # fp32 CPU, contiguous: the initial checkpoint


def load_pretrained(source: PretrainedSource) -> LoadedPretrained:
    """Weights (fp32 on CPU whatever they were saved as), architecture and identity."""
    model = load_pretrained_model(source.name_or_path, "cpu", source.revision)
    state = model_state(model)
    return LoadedPretrained(model, architecture_of(model.config, model_id(state)), state)


def width_shard_refusal(architecture: ModelPreset) -> str | None:
    """None when width shards can be cut from this architecture; else why not."""
    if architecture.model_type not in WIDTH_SHARD_FAMILIES:
        return (f"width shards are cut only from the Llama layout ({', '.join(WIDTH_SHARD_FAMILIES)}); "
                f"{architecture.model_type} models are trained whole")
    if architecture.n_kv_heads < 2:
        return "the model has one KV head: no width window to cut"
    return None
