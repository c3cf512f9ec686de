"""Bytes on the wire per contribution vs dense fp32, and held-out loss after the same rounds
with and without compression (K miners, full-model DiLoCo, plain averaging; miners carry
their AdamW moments between rounds as the miner does, `--reset-moments` for the old behaviour).

Runs the product's rounds (bench/rounds.py, through bench/collective.py's `run_diloco`) once
per density: the miner's training, compression with error feedback and contribution bytes, the
validator's scoring, aggregation and outer step. Dense fp32 has no wire format a validator
reads: that arm is merged unscored.

    python -m bench.compression --out bench/results/compression.json
    python -m bench.compression --smoke
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.collective import Setting, run_diloco
from bench.common import (add_compression_setting_args, page_store, print_table, save_loss_figure,
                          write_json)
from bench.rounds import EVAL_SEED
from protocol.recipe import CompressionConfig
from template.training.assignment import heldout_pages
from template.training.model import configure_torch_threads
from template.training.presets import PRESET_SETTINGS


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_compression_setting_args(p, rounds=32)
    p.add_argument("--report-rounds", default="8,16",
                   help="also report the gap to dense after these rounds (read off the curves)")
    p.add_argument("--topks", default="0,32,64,128", help="per 4096-chunk; 0 = dense fp32")
    p.add_argument("--bits", type=int, default=2)
    p.add_argument("--plot", type=Path, default=None, help="PNG of held-out loss per round")
    p.add_argument("--reset-moments", action="store_true",
                   help="miners start every round from zero AdamW moments (the miner before 2026-11-26)")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    if a.smoke:
        a.seq, a.batch, a.steps, a.rounds, a.miners, a.topks, a.eval_pages, a.report_rounds = \
            32, 2, 2, 2, 2, "0,32", 8, "1"
    configure_torch_threads(a.threads)
    vocab = PRESET_SETTINGS[a.preset].vocab_size
    store = page_store(vocab, a.seq)
    heldout = store.pages(heldout_pages(EVAL_SEED, store.heldout_ids, a.eval_pages))
    print(f"compression: preset={a.preset} vocab={vocab} K={a.miners} R={a.rounds} H={a.steps} "
          f"batch={a.batch}x{a.seq} lr={a.lr} bits={a.bits} threads={a.threads}", flush=True)
    rows, t0 = [], time.perf_counter()
    for k in [int(x) for x in a.topks.split(",")]:
        comp = None if k == 0 else CompressionConfig(chunk=64, topk=k, bits=a.bits, ef_beta=0.95)
        s = Setting(a.preset, vocab, a.seq, a.batch, a.steps, a.rounds, a.miners, a.lr, 2,
                    a.eval_pages, comp, 1)
        res = run_diloco(store, s, heldout, "diloco-reset" if a.reset_moments else "diloco-avg")
        wire = statistics.mean(res.wire_bytes) if comp else None
        body = statistics.mean(res.body_bytes) if res.body_bytes else None
        dense = statistics.mean(res.dense_bytes)
        rows.append({"topk": k, "density": k / 4096 if k else 1.0,
                     "wire_kb": wire / 1e3 if wire else None,
                     "payload_kb": body / 1e3 if body else None,
                     "dense_kb": dense / 1e3,
                     "ratio": dense / wire if wire else 1.0,
                     "final": res.heldout[-1], "curve": res.heldout, "merged": res.merged})
    dense = next((r for r in rows if r["topk"] == 0), None)
    marks = [m for m in (int(x) for x in a.report_rounds.split(",") if x) if 0 < m < a.rounds]
    for r in rows:
        if dense:
            r["vs_dense"] = r["final"] / dense["final"] - 1
            for m in marks:
                r[f"vs_dense_r{m}"] = r["curve"][m] / dense["curve"][m] - 1
    print_table(rows, [("topk", "top-k/4096", "d"), ("density", "density", ".2%"),
                       ("wire_kb", "wire kB", ",.1f"), ("payload_kb", "payload kB", ",.1f"),
                       ("dense_kb", "fp32 kB", ",.1f"),
                       ("ratio", "x smaller", ".0f"), ("final", "final loss", ".4f"),
                       *[(f"vs_dense_r{m}", f"vs dense @{m}", "+.2%") for m in marks],
                       ("vs_dense", "vs dense", "+.2%")],
                title=f"per contribution, {a.bits}-bit values, error feedback 0.95; held-out "
                      f"loss after {a.rounds} rounds (initial {rows[0]['curve'][0]:.4f})")
    print(f"total {time.perf_counter() - t0:.0f}s")
    write_json(a.out, {"setting": vars(a) | {"out": str(a.out), "plot": str(a.plot)}, "rows": rows})
    if a.plot is not None:
        plot(rows, a.plot)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        label = "dense fp32" if r["topk"] == 0 else f"top-{r['topk']}/4096 ({r['ratio']:.0f}x fewer bytes)"
        ax.plot(range(len(r["curve"])), r["curve"], label=label)
    ax.set_xlabel("round")
    save_loss_figure(fig, [ax], path)


if __name__ == "__main__":
    main()
