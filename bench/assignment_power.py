"""Power of the validator's assigned-vs-random test: how often honest updates pass it, and how
often updates trained on other data (wrong-data freeloaders) do, per unit and page count.

Each trial draws 48 assigned pages, 48 other pages and 48 control pages; an honest miner trains
on the assigned pages, a wrong-data miner on the other ones (the miner's own code,
`bench.rounds.Miner`: extract -> train_inner -> pseudo_gradient, then the recipe's compression as
the validator decodes it); the validator's test (`assigned_vs_random`) runs on the first n
assigned and control pages, delta applied at --scale. Warm rounds are the product's rounds
(`bench.rounds.run_rounds`, 3 honest full-model miners).

    python -m bench.assignment_power --trials 16                     # round 1, from random init
    python -m bench.assignment_power --trials 10 --warm-rounds 1 --topk 32
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch

from bench.common import DEFAULT_CACHE, print_table, write_json
from bench.rounds import Miner, RoundsSetting, WorkOrder, miner_hotkey, run_rounds
from protocol.messages import UnitOfWork
from protocol.recipe import Recipe
from template.training.checkpoint import state_hash
from template.training.compression import compress, decompress, shapes_of
from template.training.evaluation import applied_delta, per_sequence_loss
from template.training.model import load_model_state, model_state
from template.training.workload import Workload
from template.validation.scoring import assigned_vs_random

PAGES = 48


def trained_delta(workload: Workload, recipe: Recipe, base: dict, pages: list[int], unit: UnitOfWork,
                  trial: int) -> dict:
    """A fresh miner's pseudo-gradient on `pages` (no moments, no residual yet), compressed as
    sent and decoded as the validator reads it."""
    miner = Miner(miner_hotkey(0), workload.preset_name, workload.vocab_size, workload.pages)
    seed = hashlib.sha256(f"bench/assignment-power/{trial}".encode()).digest()
    delta, _ = miner.train(WorkOrder(0, seed, state_hash(base), pages, recipe, unit), base)
    update, _ = compress(delta, None, recipe.compression)
    return decompress(update, shapes_of(base))


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
    workload = Workload.build("tiny", "shakespeare", DEFAULT_CACHE, torch_threads=args.threads,
                              recipe_overrides={"pages_per_miner": PAGES, "compression": {"topk": args.topk or None}})
    recipe = workload.recipe
    model = workload.initial_model(0, torch.device("cpu"))
    if args.warm_rounds:
        warm = run_rounds(RoundsSetting(workload.preset_name, workload.vocab_size, recipe, miners=3,
                                        rounds=args.warm_rounds, label="warm"), workload.pages)
        load_model_state(model, warm.final_state)
    base = model_state(model)
    ids, rng = list(workload.pages.train_ids), torch.Generator().manual_seed(1)
    draw = lambda: [ids[i] for i in torch.randperm(len(ids), generator=rng).tolist()[:3 * PAGES]]  # noqa: E731
    full, width = UnitOfWork(), UnitOfWork(kind="shard", scheme="width", index=0, count=4)

    rows, counts = [], [int(n) for n in args.page_counts.split(",")]
    for label, unit in (("full", full), ("width 1/4", width)):
        for behaviour in ("honest", "wrong data"):
            zs = {n: [] for n in counts}
            for trial in range(args.trials):
                pages = draw()
                assigned, other, control = pages[:PAGES], pages[PAGES:2 * PAGES], pages[2 * PAGES:]
                delta = trained_delta(workload, recipe, base, assigned if behaviour == "honest" else other, unit,
                                      trial)
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
                title=f"assigned-vs-random, {args.warm_rounds} warm rounds, top-{recipe.compression.topk}, scale {args.scale:g}")
    write_json(args.out, {"args": vars(args), "rows": rows})
    return rows


if __name__ == "__main__":
    main()
