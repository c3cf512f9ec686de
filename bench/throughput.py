"""Miner inner-loop throughput: tokens/s, MFU, step time and peak memory per preset, for
full-model and shard training side by side, against a plain compiled HF Llama step.

Rows per preset (same batch x seq for every row):
  miner-full       `train_inner` on the whole model, eager (the miner with --miner.compile off)
  miner-full-comp  `train_inner(compile=True)`: the miner's default on CUDA (--miner.compile auto)
  miner-full-chunked  as miner-full-comp with the chunked, fused-gradient LM loss forced
                   (`loss_mode="chunked"`; the default chunks only when logits crowd the device)
  miner-width      `train_inner` on a quarter width shard (template/training/shards.py), with
                   the shard's loss (`shards.loss_mode`: chunked)
  miner-layers     `train_inner` on a quarter layer-range shard (shard 0: embeddings + block 0)
                   (shard rows compile as the miner would: --compile auto|on|off, default auto)
  hf-compiled      baseline: plain LlamaForCausalLM, bf16 autocast (CUDA), fused AdamW (CUDA),
                   forward+loss+backward under torch.compile; no project code in the step
  validator-eval   `per_sequence_loss` forward over held-out-sized batches (validator memory)

MFU = executed model FLOPs (6N + attention for full models; the shard's own forward/backward
count for shards) x tokens/s / peak, where peak is measured here with a large matmul:
bf16 8192^2 on CUDA, fp32 1024^2 on CPU (CPU rows run fp32: bf16 autocast is slow there).
Miner rows time the steps after the first of one `train_inner` call (the first carries the
round's one-off costs: a fresh AdamW's state; reported apart as first_step_ms); the baseline
times its steps after its warm-up. Each row runs in its own subprocess so peak memory (CUDA: max_memory_allocated; CPU: peak RSS
above the pre-model baseline) belongs to that row alone.

    python -m bench.throughput --out bench/results/throughput.json
    python -m bench.throughput --smoke
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from collections.abc import Callable

import torch
import torch.nn.functional as F

from bench.common import (contribution_wire_bytes, current_rss_bytes, measure_matmul_peak,
                          peak_rss_bytes, print_table, sync, write_json)
from protocol.recipe import Recipe
from template.training.evaluation import per_sequence_loss
from template.training.inner_loop import train_inner
from template.training.model import (PRESETS, build_model, configure_torch_threads, llama_config,
                                     model_state)
from template.training.presets import PRESET_SETTINGS
from template.training.shards import ShardSpec, extract, loss_mode
from template.training.train_step import COMPILE_MODES, should_compile

ROWS = ("miner-full", "miner-full-comp", "miner-full-chunked", "miner-width", "miner-layers",
        "hf-compiled", "validator-eval")


def _flops_per_token(row: str, preset_name: str, vocab: int, seq: int) -> tuple[float, int]:
    from bench.collective import miner_flops_per_token
    preset = PRESETS[preset_name]
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in
                  __import__("transformers").LlamaForCausalLM(
                      llama_config(preset, vocab)).named_parameters()}
    fpt, frac = miner_flops_per_token(row_spec(row), preset, vocab, shapes, seq)
    n = sum(int(torch.tensor(s).prod()) for s in shapes.values())
    return fpt, int(round(frac * n))


def row_spec(row: str) -> ShardSpec:
    """The unit a row trains: shard 0 of 4 for the shard rows, else the whole model."""
    return {"miner-width": ShardSpec("width", 0, 4),
            "miner-layers": ShardSpec("layers", 0, 4)}.get(row, ShardSpec("full"))


def hf_compiled_step(model: torch.nn.Module, opt: torch.optim.Optimizer, grad_clip: float = 1.0
                     ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The baseline's step: what a practitioner writes around a plain HF Llama."""
    device = next(model.parameters()).device

    def fwd_bwd(batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(input_ids=batch).logits
            loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                   batch[:, 1:].reshape(-1))
        loss.backward()
        return loss.detach()

    compiled = torch.compile(fwd_bwd)

    def step(batch: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = compiled(batch)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        return loss

    return step


def timing_recipe(steps: int, batch: int, pages: int) -> Recipe:
    """The miner's inner step at a fixed learning rate (no warmup) for `steps` steps."""
    return Recipe(inner_steps=steps, batch_size=batch, learning_rate=1e-3, pages_per_miner=pages)


def measure_row(row: str, preset_name: str, vocab: int, batch: int, seq: int, steps: int,
                warmup: int, device: torch.device, compile_mode: str = "auto") -> dict:
    """Time `steps` inner steps after `warmup` steps; returns the row's figures."""
    tokens = torch.randint(0, vocab, (max(batch * 4, 16), seq), generator=torch.Generator()
                           .manual_seed(0))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_mem = torch.cuda.memory_allocated(device)
    else:
        base_mem = current_rss_bytes()
    t_compile, first_step_ms, compile = 0.0, None, row == "hf-compiled"
    if row == "validator-eval":
        model = build_model(preset_name, vocab, seed=0, device=device)
        per_sequence_loss(model, tokens[:batch], batch_size=batch)
        t0 = time.perf_counter()
        for _ in range(steps):
            per_sequence_loss(model, tokens[:batch], batch_size=batch)
        sync(device)
        seconds = time.perf_counter() - t0
    elif row.startswith("miner-"):
        full = build_model(preset_name, vocab, seed=0, device="cpu")
        compile = {"miner-full": False, "miner-full-comp": True, "miner-full-chunked": True}.get(
            row, should_compile(compile_mode, device))
        spec = row_spec(row)
        mode = "chunked" if row == "miner-full-chunked" else loss_mode(spec)
        if spec.scheme == "full":
            model = full.to(device)
        else:
            model, _ = extract(model_state(full), spec, preset_name, vocab, device=device)
            del full
        t0 = time.perf_counter()
        train_inner(model, tokens, timing_recipe(max(warmup, 2 if compile else 1), batch, tokens.shape[0]),
                    compile=compile, loss_mode=mode)
        sync(device)
        t_compile = time.perf_counter() - t0
        # One more step than timed: the first (a fresh AdamW's state) is timed apart.
        stats = train_inner(model, tokens, timing_recipe(steps + 1, batch, tokens.shape[0]), seed=1,
                            compile=compile, loss_mode=mode)
        sync(device)
        seconds = (stats.seconds - stats.first_step_seconds) * steps / (stats.steps - 1)
        first_step_ms = 1e3 * stats.first_step_seconds
    else:  # the plain HF baseline
        from transformers import LlamaForCausalLM
        model = LlamaForCausalLM(llama_config(PRESETS[preset_name], vocab)).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1,
                                fused=device.type == "cuda" or None)
        step = hf_compiled_step(model, opt)
        model.train()
        tok = tokens.to(device)
        t0 = time.perf_counter()
        for i in range(max(2, warmup)):  # compile, then the first real backward
            step(tok[:batch].clone())
        sync(device)
        t_compile = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(steps):
            j = (i * batch) % (tok.shape[0] - batch + 1)
            step(tok[j:j + batch].clone())  # fresh tensor: no offset guards
        sync(device)
        seconds = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base_mem
    else:
        peak = peak_rss_bytes() - base_mem
    fpt, n_trained = _flops_per_token(row, preset_name, vocab, seq)
    if row == "validator-eval":
        fpt, n_trained = fpt / 3, 0  # forward only
    tps = steps * batch * seq / seconds
    return {"row": row, "preset": preset_name, "batch": batch, "seq": seq,
            "step_ms": 1e3 * seconds / steps, "tokens_per_s": tps, "flops_per_token": fpt,
            "achieved_flops": fpt * tps, "peak_mem_mb": peak / 2**20,
            "trained_params": n_trained, "warmup_s": t_compile, "first_step_ms": first_step_ms,
            "compiled": compile,
            "peak_rss_mb": peak_rss_bytes() / 2**20}


def _run_subprocess(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.throughput", *args], capture_output=True,
                         text=True, check=False)
    for line in out.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"worker failed: {' '.join(args)}\n{out.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default=None, help="comma list (default: CUDA all, CPU tiny,small)")
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--batch", type=int, default=None, help="default: preset batch (CPU: 8)")
    p.add_argument("--seq", type=int, default=None, help="default: preset page_len (CPU: 128)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (CUDA 20, CPU 5)")
    p.add_argument("--warmup-steps", type=int, default=None, help="untimed (CUDA 5, CPU 2)")
    p.add_argument("--no-compile", action="store_true", help="skip the compiled rows")
    p.add_argument("--compile", default="auto", choices=COMPILE_MODES,
                   help="shard rows: compile as the miner's --miner.compile would")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--inprocess", action="store_true", help="no subprocess per row (memory "
                   "figures then include earlier rows)")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    configure_torch_threads(a.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if a.device == "auto" else a.device)
    if a.worker:
        w = json.loads(a.worker)
        print(json.dumps(measure_row(w["row"], w["preset"], w["vocab"], w["batch"], w["seq"],
                                     w["steps"], w["warmup"], device, w["compile"])))
        return []
    cpu = device.type == "cpu"
    if a.smoke:
        a.presets, a.batch, a.seq, a.steps, a.warmup_steps, a.inprocess = "tiny", 2, 32, 2, 1, True
        a.no_compile, a.compile = True, "off"
    presets = (a.presets.split(",") if a.presets
               else ["tiny", "small"] if cpu else list(PRESETS))
    rows = [r for r in a.rows.split(",") if r]
    if a.no_compile:
        rows = [r for r in rows if r not in ("miner-full-comp", "hf-compiled")]
    steps = a.steps or (5 if cpu else 20)
    warm = a.warmup_steps or (2 if cpu else 5)
    dtype = torch.float32 if cpu else torch.bfloat16
    peak = measure_matmul_peak(device, dtype)
    print(f"throughput: device={device} threads={a.threads} peak={peak / 1e12:.3f} TFLOP/s "
          f"({'fp32 1024^2' if cpu else 'bf16 8192^2'} matmul, measured here); "
          f"{'fp32, no autocast' if cpu else 'bf16 autocast, fused AdamW, SDPA'}; "
          f"{steps} timed steps after {warm} warmup", flush=True)
    results = []
    for name in presets:
        d = PRESET_SETTINGS[name]
        batch = a.batch or (8 if cpu else d.recipe.batch_size)
        seq = a.seq or (128 if cpu else d.page_len)
        if not cpu:  # skip presets that cannot fit: ~16 bytes/param + activations
            need = 16 * build_param_count(name, d.vocab_size)
            if need > 0.8 * torch.cuda.get_device_properties(device).total_memory:
                print(f"skip {name}: needs ~{need / 2**30:.1f} GiB for weights+Adam")
                continue
        for row in rows:
            spec = {"row": row, "preset": name, "vocab": d.vocab_size, "batch": batch,
                    "seq": seq, "steps": steps, "warmup": warm, "compile": a.compile}
            try:
                res = (measure_row(row, name, d.vocab_size, batch, seq, steps, warm, device,
                                   a.compile)
                       if a.inprocess else
                       _run_subprocess(["--worker", json.dumps(spec), "--threads",
                                        str(a.threads), "--device", str(device)]))
            except Exception as exc:  # a failed row (e.g. compile unavailable) is reported
                print(f"  {name} {row}: failed: {str(exc).splitlines()[-1][:200]}")
                continue
            res["mfu"] = res["achieved_flops"] / peak
            results.append(res)
            print(f"  {name} {row}: {res['tokens_per_s']:,.0f} tok/s, MFU {res['mfu']:.1%}, "
                  f"peak {res['peak_mem_mb']:,.0f} MiB, warmup {res['warmup_s']:.0f} s",
                  flush=True)
            write_json(a.out, run_record(device, peak, dtype, a.threads, results, []))
    for r in results:  # memory against the whole model's default step, compiled as the row is
        full = next((f for f in results if f["preset"] == r["preset"] and f["compiled"] ==
                     r["compiled"] and f["row"] in ("miner-full", "miner-full-comp")), None)
        if full:
            r["mem_vs_full"] = r["peak_mem_mb"] / full["peak_mem_mb"]
    print_table(results, [("preset", "preset", "s"), ("row", "row", "s"),
                          ("batch", "batch", "d"), ("seq", "seq", "d"),
                          ("tokens_per_s", "tok/s", ",.0f"), ("step_ms", "step ms", ".1f"),
                          ("mfu", "MFU", ".1%"), ("peak_mem_mb", "peak MiB", ".0f"),
                          ("mem_vs_full", "mem/full", ".2f"),
                          ("trained_params", "trained params", ",d"),
                          ("warmup_s", "warmup s", ".1f")],
                title=f"miner inner loop on {device} (MFU vs measured "
                      f"{'fp32' if cpu else 'bf16'} peak {peak / 1e12:.3f} TFLOP/s)")
    wire = []
    for name in presets:
        shapes = param_shapes(name, PRESET_SETTINGS[name].vocab_size)
        dense = sum(4 * int(torch.tensor(s).prod()) for s in shapes.values())
        w = contribution_wire_bytes(shapes, topk=32, bits=2)
        wire.append({"preset": name, "params": dense // 4, "dense_mb": dense / 1e6,
                     "wire_mb": w / 1e6, "ratio": dense / w})
    print_table(wire, [("preset", "preset", "s"), ("params", "params", ",d"),
                       ("dense_mb", "fp32 MB", ".2f"), ("wire_mb", "top-32 2-bit MB", ".3f"),
                       ("ratio", "x smaller", ".0f")],
                title="bytes per whole-model contribution (one per miner per round)")
    write_json(a.out, run_record(device, peak, dtype, a.threads, results, wire))
    return results


def run_record(device: torch.device, peak: float, dtype: torch.dtype, threads: int,
               rows: list[dict], wire: list[dict]) -> dict:
    """The JSON this bench writes (also after each row, so a run cut short keeps its rows)."""
    record = {"device": str(device), "peak_flops": peak, "dtype": str(dtype), "threads": threads,
              "torch": torch.__version__, "rows": rows, "wire": wire}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        record["gpu"] = {"name": props.name, "memory_mb": props.total_memory / 2**20}
    return record


def param_shapes(name: str, vocab: int) -> dict[str, tuple[int, ...]]:
    from transformers import LlamaForCausalLM
    with torch.device("meta"):
        m = LlamaForCausalLM(llama_config(PRESETS[name], vocab))
    return {n: tuple(p.shape) for n, p in m.named_parameters()}


def build_param_count(name: str, vocab: int) -> int:
    return sum(int(torch.tensor(s).prod()) for s in param_shapes(name, vocab).values())


if __name__ == "__main__":
    main()
