"""Model presets (Llama-style causal LMs) and the helpers that move weights in and out."""
from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass

import torch
from loguru import logger
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING


@dataclass(frozen=True)
class ModelPreset:
    """Shape of a causal LM: one of the subnet's Llama presets (vocab from the tokenizer), or a
    pretrained model's architecture (`hf_config`: its config as JSON, `pretrained.architecture_of`)."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    max_seq_len: int
    tie_embeddings: bool = False  # untied keeps state_dict == named_parameters (no aliases)
    head_dim: int = 0  # 0: d_model // n_heads (some pretrained models use another)
    hf_config: str = ""  # a pretrained model's config.to_json_string(); "" for the presets

    @property
    def head_size(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def model_type(self) -> str:
        """The transformers architecture family ("llama" for the presets)."""
        return json.loads(self.hf_config)["model_type"] if self.hf_config else "llama"


PRESETS: dict[str, ModelPreset] = {
    # CPU tests and the local demo: 0.69M params at vocab 1024; a 30-step round takes ~3 s on one
    # thread (template/training/README.md).
    "tiny": ModelPreset("tiny", n_layers=2, d_model=128, n_heads=4, n_kv_heads=4, d_ff=384,
                        max_seq_len=256),
    # 16.9M at vocab 8192: the CPU benchmarks' preset (bench/README.md), shard studies included.
    "small": ModelPreset("small", n_layers=6, d_model=384, n_heads=6, n_kv_heads=6, d_ff=1024,
                         max_seq_len=1024),
    # GPT-2-small class, ~124M at vocab 50k (tied, like GPT-2).
    "124m": ModelPreset("124m", n_layers=12, d_model=768, n_heads=12, n_kv_heads=12, d_ff=2048,
                        max_seq_len=1024, tie_embeddings=True),
    # TinyLlama-shaped ~1.1B at vocab 32k.
    "1b": ModelPreset("1b", n_layers=22, d_model=2048, n_heads=32, n_kv_heads=4, d_ff=5632,
                      max_seq_len=2048, tie_embeddings=False),
}


def configure_torch_threads(n: int) -> None:
    """Cap CPU threads (several neurons share few cores; oversubscription is much slower)."""
    torch.set_num_threads(max(1, n))
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel op
        torch.set_num_interop_threads(max(1, n))


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA when there is one, else the CPU; anything else is a torch device name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_context(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; plain fp32 on CPU (CPU bf16 is slow and noisier)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def llama_config(preset: ModelPreset, vocab_size: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=preset.d_model,
        intermediate_size=preset.d_ff,
        num_hidden_layers=preset.n_layers,
        num_attention_heads=preset.n_heads,
        num_key_value_heads=preset.n_kv_heads,
        max_position_embeddings=preset.max_seq_len,
        tie_word_embeddings=preset.tie_embeddings,
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        attn_implementation="sdpa",
        use_cache=False,
    )


def model_config(preset: ModelPreset, vocab_size: int) -> PretrainedConfig:
    """The transformers config of `preset`: the presets' Llama config, or the pretrained model's
    own with the preset's heads, KV heads, head size and FFN width (a width shard changes those)."""
    if not preset.hf_config:
        config = llama_config(preset, vocab_size)
        if preset.head_dim:
            config.head_dim = preset.head_dim
        return config
    fields = json.loads(preset.hf_config)
    config = CONFIG_MAPPING[fields["model_type"]].from_dict(fields)
    if config.vocab_size != vocab_size:
        raise ValueError(f"{preset.name}: vocab_size {vocab_size} is not the model's {config.vocab_size}")
    config.num_attention_heads, config.num_key_value_heads = preset.n_heads, preset.n_kv_heads
    config.intermediate_size, config.head_dim = preset.d_ff, preset.head_size
    config.use_cache = False
    return config


def empty_model(preset: ModelPreset, vocab_size: int, device: torch.device | str = "cpu") -> PreTrainedModel:
    """A model of `preset`'s architecture whose weights are to be loaded (`load_model_state`):
    fp32, SDPA attention, the caller's RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        if not preset.hf_config:
            model = LlamaForCausalLM(model_config(preset, vocab_size))
        else:
            model = AutoModelForCausalLM.from_config(model_config(preset, vocab_size), dtype=torch.float32,
                                                     attn_implementation="sdpa")
    return model.to(device)


def build_model(preset_name: str, vocab_size: int, seed: int,
                device: torch.device | str | None = None) -> LlamaForCausalLM:
    """A freshly initialised model; the same (preset, vocab, seed) gives the same weights."""
    if preset_name not in PRESETS:
        raise KeyError(f"unknown preset {preset_name!r}; choose one of {sorted(PRESETS)}")
    preset = PRESETS[preset_name]
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG untouched
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama_config(preset, vocab_size))
    model = model.to(torch.device(device) if device is not None else pick_device())
    n = sum(p.numel() for p in model.parameters())
    logger.debug(f"model: preset={preset_name} vocab={vocab_size} params={n:,} {asdict(preset)}")
    return model


def load_pretrained_model(name_or_path: str, device: torch.device | str | None = None, revision: str = ""
                          ) -> PreTrainedModel:
    """Any causal LM from the hub (at `revision`, a commit, tag or branch; "" for the default
    branch) or a save_pretrained directory, in fp32 whatever dtype it was saved in (bf16 too)."""
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32, attn_implementation="sdpa",
                                                 **({"revision": revision} if revision else {}))
    model.config.use_cache = False
    return model.to(torch.device(device) if device is not None else pick_device())


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights that rounds exchange: every parameter (tied ones once), fp32 on CPU, each
    contiguous (a loaded checkpoint may hold transposed views; compression flattens them)."""
    return {name: p.detach().to("cpu", torch.float32).clone(memory_format=torch.contiguous_format)
            for name, p in model.named_parameters()}


@torch.no_grad()
def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` into the model's parameters; names and shapes must match exactly."""
    params = dict(model.named_parameters())
    missing, unknown = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or unknown:
        raise KeyError(f"state does not match model: missing {missing[:5]}, unknown {unknown[:5]}")
    for name, p in params.items():
        if tuple(state[name].shape) != tuple(p.shape):
            raise ValueError(f"{name}: shape {tuple(state[name].shape)} != {tuple(p.shape)}")
        p.copy_(state[name].to(p.device, p.dtype))
