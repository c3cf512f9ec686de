"""Model presets (Llama-style causal LMs) and the helpers that move weights in and out."""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch
from loguru import logger
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel


@dataclass(frozen=True)
class ModelPreset:
    """Shape of a Llama-style model; vocab comes from the tokenizer."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    max_seq_len: int
    tie_embeddings: bool = False  # untied keeps state_dict == named_parameters (no aliases)


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


def load_pretrained_model(name_or_path: str, device: torch.device | str | None = None
                          ) -> PreTrainedModel:
    """Production path: any causal LM from the hub or a save_pretrained directory (fp32)."""
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32,
                                                 attn_implementation="sdpa")
    return model.to(torch.device(device) if device is not None else pick_device())


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights that rounds exchange: every parameter (tied ones once), fp32 on CPU."""
    return {name: p.detach().to("cpu", torch.float32).clone()
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
