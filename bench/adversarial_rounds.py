"""The adversarial harness in process: the same miner behaviours (template/miner/behaviours.py)
and the validator's own scoring, merge and score EMA (bench/rounds.py pieces) in overlapped
rounds with the miners' eager start, without the chain or processes, so a scoring change can be
measured in minutes. Emission here is the validator's
weights (with one validator, Yuma's incentive equals them); the live harness
(`bench/adversarial.py`) reads it from the chain.

    python -m bench.adversarial_rounds --honest 3 --attackers lazy_quarter:4 --rounds 8 --out runs/adv-lazy
    python -m bench.adversarial_rounds --honest 3 --speeds 1,1,0.33 --attackers "" --out runs/adv-speeds
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench.adversary import (MinerResult, MinerSpec, RunResult, add_run_arguments, bars_table, markdown_table,
                             miner_specs, report_line, write)
from bench.common import DEFAULT_CACHE
from bench.rounds import (NETUID, Miner, RoundContext, Sent, State, WorkOrder, assignments, bench_eval_seed,
                          bench_round_seed, miner_hotkey, score_and_merge)
from template.config import RoundConfig
from template.training.assignment import global_eval_pages, heldout_pages, sealed_pages
from template.training.checkpoint import state_hash
from template.training.evaluation import per_sequence_loss
from template.training.model import build_model, load_model_state, model_state
from template.training.outer_step import apply_outer_step, measured_outer_step
from template.training.workload import Workload
from template.validation.round import claimed_tokens
from template.validation.score_ema import ScoreBook
from template.validation.scoring import ScoringConfig


def build_miners(specs: list[MinerSpec], workload: Workload, shared_root: Path) -> tuple[list[Miner], dict[str, str]]:
    """Miners in the order they send each round (a partner before its copier, a sybil group's
    trainer first), and each hotkey's coldkey (a sybil group shares one)."""
    hotkeys = {s.name: miner_hotkey(i) for i, s in enumerate(specs)}
    coldkeys = {hotkeys[s.name]: (s.group or hotkeys[s.name]) for s in specs}
    groups: dict[str, list[str]] = {}
    for s in specs:
        if s.group:
            groups.setdefault(s.group, []).append(hotkeys[s.name])
    for group, members in groups.items():
        (shared_root / group).mkdir(parents=True, exist_ok=True)
        (shared_root / group / "members").write_text("\n".join(sorted(members)) + "\n")
    miners = [Miner(hotkeys[s.name], workload.preset_name, workload.vocab_size, workload.pages,
                    step_budget=s.step_budget, behaviour=s.behaviour,
                    shared_dir=shared_root / s.group if s.group else None,
                    partner=hotkeys[s.partner] if s.partner else None) for s in specs]
    rank = {hk: i for members in groups.values() for i, hk in enumerate(sorted(members))}
    miners.sort(key=lambda m: (m.partner is not None, rank.get(m.hotkey, 0)))
    return miners, coldkeys


def eager_start(miner: Miner, base: State, previous: State | None, merged: int, round_index: int,
                outer_lr: float) -> State:
    """Where a miner of round `round_index` trains from, as `MinerWorker.eager_start` decides it:
    its base (the checkpoint of two rounds before) moved by a stand-in for the previous round's
    merge, still in flight: its own last update for 1/n and the base's own step (n merged) for
    (n-1)/n; the base itself when that step is not known."""
    own = miner.last_sent
    if own is None or round_index - 1 not in miner.bodies or round_index < 2:
        return base
    if previous is None or merged < 2 or outer_lr <= 0:
        return base
    n = merged
    return apply_outer_step(base, {k: own[k] / n + (previous[k] - base[k]) / outer_lr * ((n - 1) / n)
                                   for k in own}, outer_lr)


def run(specs: list[MinerSpec], workload: Workload, rounds: int, label: str, log=print) -> RunResult:
    """Overlapped rounds as the product runs them (docs/round.md, "Overlapped rounds"): the miners
    of round r train from the checkpoint of round r-2 plus their eager stand-in for round r-1's
    merge; round r-1 settles meanwhile, so round r is scored on that head and merged onto it, at
    the outer lr of the step that made the head (`Validator.score`), and the lead measures the
    step's size on the round's held-out pages (`settle_as_lead`, `measured_outer_step`)."""
    recipe, pages = workload.recipe, workload.pages
    model = build_model(workload.preset_name, workload.vocab_size, seed=0, device="cpu")
    heads = [model_state(model)]  # heads[k]: the checkpoint after round k settled
    merged_in: list[int] = [0]  # contributions merged into each head
    head_lr: list[float] = [recipe.outer_lr]  # the outer lr of the step that made each head
    step_lrs: list[float] = []
    global_eval = pages.pages(global_eval_pages(pages.heldout_ids))
    sealed = pages.pages(sealed_pages(pages.heldout_ids))
    loss = lambda tokens: float(per_sequence_loss(model, tokens).mean())  # noqa: E731
    heldout, sealed_curve = [loss(global_eval)], [loss(sealed)]
    book = ScoreBook()
    per_round: list[dict] = []
    pays: dict[str, list[float]] = {}
    accepted: dict[str, int] = {}
    compute: dict[str, int] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        miners, coldkeys = build_miners(specs, workload, Path(tmp))
        hotkeys = [m.hotkey for m in miners]
        uids = {hk: i for i, hk in enumerate(hotkeys)}
        names = {miner_hotkey(i): s.name for i, s in enumerate(specs)}
        for r in range(1, rounds + 1):
            base_round = max(0, r - 2)
            base, head = heads[base_round], heads[r - 1]
            previous = heads[base_round - 1] if base_round >= 1 else None
            checkpoint, assigned = state_hash(base), assignments(pages, recipe, hotkeys, r)
            sent: list[Sent] = []
            late: set[str] = set()
            done: dict[str, Miner] = {}
            for m in miners:
                order = WorkOrder(r, bench_round_seed(r), checkpoint, assigned[m.hotkey], recipe)
                start = eager_start(m, base, previous, merged_in[base_round], r, recipe.outer_lr)
                sent.append(m.contribute(order, base, others=done, start=start))
                done[m.hotkey] = m
                compute[m.hotkey] = compute.get(m.hotkey, 0) + (claimed_tokens(sent[-1].body) or 0)
                if m.behaviour == "late":
                    late.add(m.hotkey)
            on_time = [s for s in sent if s.hotkey not in late]
            ctx = RoundContext(NETUID, r, checkpoint, bench_eval_seed(r))
            load_model_state(model, head)
            scored_at = recipe.model_copy(update={"outer_lr": min(recipe.outer_lr, head_lr[r - 1])})
            merge = score_and_merge(model, head, on_time, assigned, ctx, pages, scored_at, workload.preset_name,
                                    workload.vocab_size, ScoringConfig(), RoundConfig().heldout_pages,
                                    RoundConfig().control_pages, coldkeys=coldkeys)
            per_round.append({names[hk]: report_line(rep) for hk, rep in merge.reports.items()})
            book.update({hk: rep.pay for hk, rep in merge.reports.items()}, uids)
            for hk in hotkeys:
                report = merge.reports.get(hk)
                pays.setdefault(hk, []).append(report.pay if report else 0.0)
                accepted[hk] = accepted.get(hk, 0) + int(hk in merge.merged)
            new_head, lr_taken = head, head_lr[r - 1]
            if merge.update is not None:
                measured_on = pages.pages(heldout_pages(ctx.eval_seed, pages.heldout_ids,
                                                        RoundConfig().heldout_pages))

                def loss_of(state: State) -> float:
                    load_model_state(model, state)
                    return loss(measured_on)
                lr_taken, new_head, _ = measured_outer_step(head, merge.update, recipe.outer_lr, loss_of)
                step_lrs.append(lr_taken)
            heads.append(new_head)
            head_lr.append(lr_taken)
            merged_in.append(len(merge.merged) if merge.update is not None else 0)
            load_model_state(model, new_head)
            heldout.append(loss(global_eval))
            sealed_curve.append(loss(sealed))
            if log:
                log(f"  {label} round {r}: held-out {heldout[-1]:.4f}, sealed {sealed_curve[-1]:.4f}, merged "
                    f"{len(merge.merged)}/{len(sent)}, outer lr {lr_taken:g} "
                    f"({time.perf_counter() - started:.0f}s)")
    weights = book.weights(uids)
    results = []
    for i, spec in enumerate(specs):
        hk = miner_hotkey(i)
        share = weights.get(uids[hk], 0.0)
        results.append(MinerResult(spec.name, spec.behaviour, uids[hk], sum(pays[hk]) / rounds, accepted[hk],
                                   share, share, compute[hk], spec.speed))
    return RunResult(label, results, heldout, sealed_curve, rounds, time.perf_counter() - started,
                     {"recipe": recipe.model_dump(), "specs": [s.__dict__ for s in specs], "overlap": True,
                      "outer_lrs": step_lrs}, per_round)


def main(argv: list[str] | None = None) -> RunResult:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(p)
    p.add_argument("--inner-steps", type=int, default=0, help="0: the preset's")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--baseline", type=Path, default=None, help="an attack-free run's result.json (loss bars)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--smoke", action="store_true", help="2 short rounds on 32-token pages (tests)")
    a = p.parse_args(argv)
    overrides = {"inner_steps": a.inner_steps or None}
    if a.smoke:
        a.rounds, overrides = 2, {"inner_steps": 4, "batch_size": 4, "pages_per_miner": 8}
    workload = Workload.build("tiny", "shakespeare", a.cache_dir, page_len=32 if a.smoke else 0,
                              torch_threads=a.threads, recipe_overrides=overrides)
    torch.manual_seed(0)
    specs = miner_specs(a.honest, a.speeds, a.attackers, workload.recipe.inner_steps)
    result = run(specs, workload, a.rounds, f"in-process {a.attackers or 'attack-free'}")
    baseline = RunResult.from_json(json.loads(a.baseline.read_text())) if a.baseline else None
    print(markdown_table(result))
    if a.out:
        found = write(result, a.out, baseline)
        print(bars_table(found))
    return result


if __name__ == "__main__":
    main()
