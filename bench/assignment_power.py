"""Power of the validator's assigned-vs-random test: how often honest updates pass it, and how
often updates trained on other data (wrong-data freeloaders) do, per unit and page count.

Each trial draws 48 assigned pages, 48 other pages and 48 control pages; an honest miner trains
on the assigned pages, a wrong-data miner on the other ones (the validator's own miner code:
extract -> train_inner -> pseudo_gradient -> compress -> decompress); the validator's test
(`assigned_vs_random`) runs on the first n assigned and control pages, delta applied at --scale.

    python -m bench.assignment_power --trials 16                     # round 1, from random init
    python -m bench.assignment_power --trials 10 --warm-rounds 1 --topk 32
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from bench.common import print_table, write_json
from template.training.workload import Workload
from template.config import DataConfig
from template.training.compression import compress, decompress
from template.training.evaluation import applied_delta, per_sequence_loss
from template.training.inner_loop import pseudo_gradient, train_inner
from template.training.model import configure_torch_threads, load_model_state, model_state
from template.training.shards import ShardSpec, delta_to_full, extract, loss_mode, sub_state
from template.validation.scoring import assigned_vs_random

PAGES = 48


def trained_delta(workload: Workload, base: dict, pages: list[int], spec: ShardSpec, compression, seed: int) -> dict:
    shapes = {k: tuple(v.shape) for k, v in base.items()}
    model, plan = extract(base, spec, workload.preset_name, workload.vocab_size)
    start = sub_state(model) if spec.scheme != "full" else base
    d = workload.defaults
    train_inner(model, workload.pages.tokens[pages], steps=d.inner_steps, batch_size=d.batch_size,
                lr=d.learning_rate, warmup=d.warmup_steps, seed=seed, loss_mode=loss_mode(spec))
    delta = pseudo_gradient(start, model)
    if spec.scheme != "full":
        touched = delta_to_full(delta, plan, shapes)
        delta = {k: touched.get(k, torch.zeros(s)) for k, s in shapes.items()}
    update, _ = compress(delta, None, compression)
    return decompress(update, shapes)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--topk", type=int, default=0, help="values kept per 4096-chunk (0: the tiny preset's 128)")
    p.add_argument("--scale", type=float, default=0.5, help="delta scale at evaluation (outer lr / peers)")
    p.add_argument("--warm-rounds", type=int, default=0, help="rounds of 3 honest full miners before the trials")
    p.add_argument("--page-counts", default="16,48", help="assigned = control pages per test")
    p.add_argument("--z", type=float, default=1.0, help="the gate's threshold")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--smoke", action="store_true", help="2 trials, 4 pages a side (tests)")
    args = p.parse_args(argv)
    if args.smoke:
        args.trials, args.page_counts = 2, "4"
    configure_torch_threads(args.threads)
    workload = Workload.build(DataConfig(preset="tiny"), Path.home() / ".cache" / "deai")
    compression = dataclasses.replace(workload.compression, topk=args.topk or workload.compression.topk)
    model = workload.initial_model(0, torch.device("cpu"))
    ids, rng = list(workload.pages.train_ids), torch.Generator().manual_seed(1)
    draw = lambda: [ids[i] for i in torch.randperm(len(ids), generator=rng).tolist()[:3 * PAGES]]  # noqa: E731
    full = ShardSpec("full", 0, 1)
    for r in range(args.warm_rounds):
        base = model_state(model)
        deltas = [trained_delta(workload, base, draw()[:PAGES], full, compression, seed=100 * r + m) for m in range(3)]
        load_model_state(model, {k: base[k] + sum(d[k] for d in deltas) / 3 for k in base})
    base = {k: v.clone() for k, v in model_state(model).items()}

    rows, counts = [], [int(n) for n in args.page_counts.split(",")]
    for label, spec in (("full", full), ("width 1/4", ShardSpec("width", 0, 4))):
        for behaviour in ("honest", "wrong data"):
            zs = {n: [] for n in counts}
            for trial in range(args.trials):
                pages = draw()
                assigned, other, control = pages[:PAGES], pages[PAGES:2 * PAGES], pages[2 * PAGES:]
                delta = trained_delta(workload, base, assigned if behaviour == "honest" else other, spec,
                                      compression, seed=trial)
                before_a, before_c = (per_sequence_loss(model, workload.pages.tokens[x]) for x in (assigned, control))
                with applied_delta(model, delta, args.scale):
                    after_a, after_c = (per_sequence_loss(model, workload.pages.tokens[x]) for x in (assigned, control))
                for n in counts:
                    zs[n].append(assigned_vs_random(before_a[:n], after_a[:n], before_c[:n], after_c[:n], args.z).z)
            for n in counts:
                passed = sum(z >= args.z for z in zs[n])
                rows.append({"unit": label, "miner": behaviour, "pages": n, "passed": f"{passed}/{args.trials}",
                             "z_min": min(zs[n]), "z_median": sorted(zs[n])[len(zs[n]) // 2], "z_max": max(zs[n])})
    print_table(rows, [("unit", "unit", "s"), ("miner", "miner", "s"), ("pages", "pages a side", "d"),
                       ("passed", f"z >= {args.z:g}", "s"), ("z_min", "z min", ".2f"),
                       ("z_median", "z median", ".2f"), ("z_max", "z max", ".2f")],
                title=f"assigned-vs-random, {args.warm_rounds} warm rounds, top-{compression.topk}, scale {args.scale:g}")
    write_json(args.out, {"args": vars(args), "rows": rows})
    return rows


if __name__ == "__main__":
    main()
