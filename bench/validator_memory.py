"""Validator host memory and time for one round's contributions: kept packed and decoded
tensor by tensor (`DecodedUpdate`, what the validator does) versus every contribution decoded
to dense fp32 up front (what it did before).

Each mode runs in its own subprocess on the same packed contributions (random deltas of the
preset's shapes, compressed with the production setting), through the validator's host-side
work on them: the structural checks, norms, pairwise similarity, median-norm clipping and the
aggregate. Model evaluation (forward passes with each update applied) is left out: it is the
same work in both modes. Peak RSS is measured above the process's baseline after the packed
contributions are loaded.

    python -m bench.validator_memory --preset 124m --miners 8 --out bench/results/validator_memory_124m.json
    python -m bench.validator_memory --preset small --miners 16,64,256 --modes packed \
        --out bench/results/validator_host_small_sweep.json   # and the growth exponent in N
    python -m bench.validator_memory --smoke
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bench.common import current_rss_bytes, peak_rss_bytes, print_table, write_json
from bench.throughput import param_shapes
from protocol.recipe import CompressionConfig
from template.training.compression import CompressedUpdate, DecodedUpdate, compress, decompress
from template.training.model import configure_torch_threads
from template.training.presets import PRESET_SETTINGS, PRODUCTION_COMPRESSION
from template.validation.aggregation import aggregate, clip_to_norms, median_tensor_norms
from template.validation.checks import is_empty, non_finite, similarity_matrices, wrong_shape
from template.validation.norms import delta_norm

MODES = ("packed", "dense")


def write_contributions(folder: Path, shapes: dict[str, tuple[int, ...]], miners: int,
                        cfg: CompressionConfig) -> None:
    """`miners` packed contributions: a shared direction plus each miner's own noise."""
    gen = torch.Generator().manual_seed(0)
    for m in range(miners):
        delta = {n: torch.randn(s, generator=gen) * 1e-3 for n, s in shapes.items()}
        update, _ = compress(delta, None, cfg)
        del delta
        save_file(update.to_tensors(), str(folder / f"miner{m}.safetensors"))


def host_side_round(folder: Path, shapes: dict[str, tuple[int, ...]], cfg: CompressionConfig,
                    mode: str) -> dict:
    """The validator's work on the round's contributions, in `mode`; seconds and peak RSS."""
    packed = [CompressedUpdate.from_tensors(load_file(str(p)), shapes, cfg)
              for p in sorted(folder.glob("*.safetensors"))]
    base = current_rss_bytes()
    t0 = time.perf_counter()
    deltas = [DecodedUpdate(u, shapes) if mode == "packed" else decompress(u, shapes) for u in packed]
    for d in deltas:  # the structural gates and the norm gate
        assert non_finite(d) is None and is_empty(d) is None and wrong_shape(d, shapes) is None
    norms = [delta_norm(d) for d in deltas]
    cosine, _ = similarity_matrices(deltas)
    limits = median_tensor_norms(deltas)
    for d in deltas:  # what each evaluation reads: the clipped update, tensor by tensor
        for name, tensor in clip_to_norms(d, limits).items():
            tensor.sum()
    merged = aggregate(deltas, min_contributions=2)
    seconds = time.perf_counter() - t0
    return {"mode": mode, "miners": len(deltas), "seconds": seconds,
            "peak_rss_mb": (peak_rss_bytes() - base) / 2**20,
            "median_norm": statistics.median(norms), "max_offdiag_cosine":
            float((cosine - torch.eye(len(deltas), dtype=cosine.dtype)).max()),
            "merged_norm": delta_norm(merged)}


def growth_exponent(rows: list[dict]) -> float | None:
    """The least-squares slope of log(seconds) on log(miners): 1 for work linear in N."""
    points = [(math.log(r["miners"]), math.log(r["seconds"])) for r in rows if r["seconds"] > 0]
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    return (sum((x - mean_x) * (y - mean_y) for x, y in points)
            / sum((x - mean_x) ** 2 for x, _ in points))


def measure(preset: str, miners: int, modes: list[str], threads: int, shapes, cfg) -> list[dict]:
    """Each mode's run (its own subprocess) on the same `miners` packed contributions."""
    dense_mb = sum(4 * torch.Size(s).numel() for s in shapes.values()) / 2**20
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_contributions(Path(tmp), shapes, miners, cfg)
        print(f"validator_memory: {preset}, {miners} contributions packed in "
              f"{time.perf_counter() - t0:.0f} s (dense fp32 delta {dense_mb:,.1f} MiB each)", flush=True)
        for mode in modes:
            args = ["--worker", json.dumps({"folder": tmp, "mode": mode}), "--preset", preset,
                    "--threads", str(threads)]
            out = subprocess.run([sys.executable, "-m", "bench.validator_memory", *args],
                                 capture_output=True, text=True, check=False)
            line = next((x for x in out.stdout.splitlines()[::-1] if x.startswith("{")), None)
            if line is None:
                raise RuntimeError(f"{mode} worker failed:\n{out.stderr[-2000:]}")
            row = json.loads(line) | {"preset": preset, "dense_delta_mb": dense_mb}
            rows.append(row)
            print(f"  {mode}: {row['seconds']:.1f} s, peak RSS +{row['peak_rss_mb']:,.0f} MiB", flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--miners", default="8", help="contributions per round; several (16,64,256) fit the growth in N")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="tiny preset, 3 miners, seconds")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    configure_torch_threads(a.threads)
    if a.smoke:
        a.preset, a.miners = "tiny", "3"
    shapes = param_shapes(a.preset, PRESET_SETTINGS[a.preset].vocab_size)
    cfg = PRODUCTION_COMPRESSION
    if a.worker:
        w = json.loads(a.worker)
        print(json.dumps(host_side_round(Path(w["folder"]), shapes, cfg, w["mode"])))
        return []
    modes = a.modes.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"unknown mode {unknown[0]!r}; choose from {MODES}")
    counts = [int(n) for n in a.miners.split(",")]
    rows = [row for n in counts for row in measure(a.preset, n, modes, a.threads, shapes, cfg)]
    print_table(rows, [("preset", "preset", "s"), ("mode", "mode", "s"), ("miners", "miners", "d"),
                       ("seconds", "seconds", ".1f"), ("peak_rss_mb", "peak RSS MiB", ",.0f"),
                       ("dense_delta_mb", "dense delta MiB", ",.1f"),
                       ("merged_norm", "merged norm", ".6g")],
                title="validator host-side work on one round's contributions")
    exponents = {mode: growth_exponent([r for r in rows if r["mode"] == mode]) for mode in modes}
    for mode, exponent in exponents.items():
        if exponent is not None:
            print(f"{mode}: seconds grow as N^{exponent:.2f} over N = {', '.join(map(str, counts))}")
    write_json(a.out, {"preset": a.preset, "miners": counts if len(counts) > 1 else counts[0],
                       "threads": a.threads, "torch": torch.__version__, "rows": rows,
                       "growth_exponent": {m: e for m, e in exponents.items() if e is not None}})
    return rows


if __name__ == "__main__":
    main()
