"""Shared pieces of the benchmarks: data, FLOP accounting, peak matmul, wire size, tables."""
from __future__ import annotations

import json
import math
import resource
import time
from pathlib import Path

import torch

from template.training.model import PRESETS, ModelPreset
from template.training.pages import PageStore, build_page_store

DEFAULT_CACHE = Path.home() / ".cache" / "deai"


def page_store(vocab_size: int, page_len: int, cache_dir: Path = DEFAULT_CACHE) -> PageStore:
    return build_page_store(cache_dir, vocab_size, page_len)


# ------------------------------------------------------------------ FLOP accounting


def attention_flops_per_token(preset: ModelPreset, seq_len: int, n_heads: int | None = None
                              ) -> float:
    """Forward+backward FLOPs of QK^T and AV per token (causal mask not discounted, as in the
    PaLM MFU convention): 6 * 2 * n_layers * seq * heads * head_dim."""
    hd = preset.d_model // preset.n_heads
    heads = preset.n_heads if n_heads is None else n_heads
    return 12.0 * preset.n_layers * seq_len * heads * hd


def model_flops_per_token(n_params: int, preset: ModelPreset, seq_len: int) -> float:
    """6 N + attention, the usual MFU numerator (embedding lookups included in N: a slight
    overcount, the same for every arm)."""
    return 6.0 * n_params + attention_flops_per_token(preset, seq_len)


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, n: int | None = None,
                        seconds: float = 1.0) -> float:
    """FLOP/s of a large square matmul on this device (the MFU denominator)."""
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or reps < 3:
        a @ b
        reps += 1
    sync(device)
    return 2.0 * n ** 3 * reps / (time.perf_counter() - t0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_bytes() -> int:
    """This process's high-water resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


# ------------------------------------------------------------------ wire size


def contribution_wire_bytes(shapes: dict[str, tuple[int, ...]], topk: int = 32, bits: int = 2,
                            chunk: int = 64) -> int:
    """Bytes a compressed contribution of these tensors takes on the wire (same layout as
    `compression.compress`: packed 12-bit indices, packed codes, one fp16 scale per chunk)."""
    from protocol.recipe import CompressionConfig
    from template.training.compression import _layout, _packed_len
    cfg = CompressionConfig(chunk=chunk, topk=topk, bits=bits)
    total = 0
    for shape in shapes.values():
        lay = _layout(tuple(shape), chunk, topk)
        total += (_packed_len(lay.total_k, cfg.index_bits) + _packed_len(lay.total_k, bits)
                  + 2 * lay.n_chunks)
    return total


# ------------------------------------------------------------------ output


def print_table(rows: list[dict], columns: list[tuple[str, str, str]], title: str = "") -> None:
    """columns: (key, header, format spec)."""
    cells = [[("-" if r.get(k) is None else format(r[k], fmt)) for k, _, fmt in columns]
             for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, (_, h, _) in enumerate(columns)]
    if title:
        print(title)
    print("  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))


def add_compression_setting_args(p, rounds: int) -> None:
    """The compression benches' shared setting: tiny preset, K=4 full-model miners, H=30."""
    p.add_argument("--preset", default="tiny")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=30, help="H")
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--miners", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--eval-pages", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)


def save_loss_figure(fig, axes, path: Path) -> None:
    """Label every held-out-loss axis, lay out and write the PNG."""
    for ax in axes:
        ax.set_ylabel("held-out loss")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def write_json(path: Path | None, payload: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable))
    print(f"wrote {path}")


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (torch.Tensor,)):
        return x.tolist()
    return str(x)


def preset(name: str) -> ModelPreset:
    return PRESETS[name]
