"""In-process rounds built from the product's own pieces: what the benches and the convergence
test measure, so a change to the miner's training or to the validator's scoring and
aggregation moves their figures.

Each round, every miner does what `template/miner/worker.py` does with its work order: trains
its unit with `train_inner` under the round's `Recipe` (AdamW moments carried over while it
keeps the unit), takes the `pseudo_gradient`, `compress`es it with its error-feedback
residual and packs the contribution bytes (`encode_tensors` with `ContributionMeta`). The
validator then does what `template/validator/lifecycle.py` does with those bytes:
`score_contributions`, `aggregate_in_arrival_order` of the accepted ones, the lead's
`measured_outer_step` on the round's held-out pages (`measure_step=False`: `apply_outer_step`).
Seeds come from `template.training.assignment` as on chain, from deterministic stand-in block
hashes (a bench has no chain).

A research codec (`Codec`: the dense reference, the prototypes of
bench/compression_variants.py) has no wire format a validator reads, so its contributions
skip the scoring and go straight to the same aggregation.

    python -m bench.rounds                    # the tiny preset's recipe: 3 miners, 8 rounds, top-128
    python -m bench.rounds --topk 32          # production density
    python -m bench.rounds --no-compression   # dense reference (merged unscored)
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from bench.common import DEFAULT_CACHE, write_json
from protocol.messages import ContributionMeta, UnitOfWork
from protocol.payload import encode_tensors
from protocol.recipe import Recipe
from template.config import RoundConfig
from template.training.assignment import assigned_pages, eval_seed, heldout_pages, round_seed
from template.training.checkpoint import state_hash
from template.training.compression import CompressedUpdate, compress, decompress, dense_bytes, shapes_of, wire_bytes
from template.training.evaluation import per_sequence_loss, state_loss
from template.training.inner_loop import InnerStats, pseudo_gradient, train_inner
from template.training.model import build_model, load_model_state, model_state
from template.training.outer_step import apply_outer_step, measured_outer_step
from template.training.pages import PageStore
from template.training.shards import ShardSpec, shard_delta_in_full_model, extract, loss_mode, sub_state
from template.training.workload import Workload
from template.miner.behaviours import contribution, step_budget_stop
from template.validation.round import (Received, RoundContext, aggregate_in_arrival_order, full_work_tokens,
                                       score_contributions)
from template.validation.scoring import ScoreReport, ScoringConfig

Delta = dict[str, torch.Tensor]
State = dict[str, torch.Tensor]

NETUID = 0
FULL = UnitOfWork()
EVAL_SEED = b"bench-eval"  # the benches' fixed held-out pages for the loss curve
NOT_SCORED = "not scored: a research codec has no wire format"


# ------------------------------------------------------------------ chain stand-ins


def stand_in_block_hash(kind: str, round_index: int) -> str:
    """A deterministic block hash: a bench has no chain, and no miner that could exploit
    knowing a round's seed in advance."""
    return "0x" + hashlib.sha256(f"bench/{kind}/{round_index}".encode()).hexdigest()


def bench_round_seed(round_index: int) -> bytes:
    return round_seed(stand_in_block_hash("start", round_index), round_index)


def bench_eval_seed(round_index: int) -> bytes:
    return eval_seed(stand_in_block_hash("eval", round_index))


def miner_hotkey(index: int) -> str:
    """An ss58-sized stand-in hotkey (assignment hashes it; the metadata bounds its length)."""
    return "5" + hashlib.sha256(f"bench/miner/{index}".encode()).hexdigest()[:47]


def assignments(pages: PageStore, recipe: Recipe, hotkeys: list[str], round_index: int
                ) -> dict[str, list[int]]:
    """Each hotkey's pages in round `round_index`, as the lead assigns them."""
    seed = bench_round_seed(round_index)
    return {hk: assigned_pages(seed, hk, pages.train_ids, recipe.pages_per_miner) for hk in hotkeys}


# ------------------------------------------------------------------ miner


@dataclass(frozen=True)
class WorkOrder:
    """What a miner trains from (the fields of a `TrainRequest` that training reads)."""

    round_index: int
    seed: bytes
    base_checkpoint: str
    pages: list[int]
    recipe: Recipe
    unit: UnitOfWork = FULL


class Codec(Protocol):
    """A research codec: what a validator would decode of `delta` and the bytes it would take.
    `memory` belongs to one miner and unit (error feedback, warm starts)."""

    name: str

    def send(self, delta: Delta, memory: dict) -> tuple[Delta, int]: ...


class DenseCodec:
    """No compression: the reference arm."""

    name = "dense"

    def send(self, delta: Delta, memory: dict) -> tuple[Delta, int]:
        return delta, dense_bytes(shapes_of(delta))


@dataclass
class Sent:
    """One miner's contribution: the bytes it serves (product codec) or what a validator would
    decode of it (research codec)."""

    hotkey: str
    unit: UnitOfWork
    stats: InnerStats
    dense_bytes: int  # the pseudo-gradient as fp32
    wire_bytes: int  # the packed tensors (a research codec: its own count)
    body: bytes | None = None
    delta: Delta | None = None


class Miner:
    """One miner across rounds: training, carried moments and error feedback as
    `MinerWorker._train` / `_contribution` keep them; `behaviour` (template/miner/behaviours.py)
    makes its contribution, honest by default."""

    def __init__(self, hotkey: str, preset: str, vocab_size: int, pages: PageStore,
                 codec: Codec | None = None, carry_moments: bool = True, device: str = "cpu",
                 step_budget: int = 0, behaviour: str = "honest", shared_dir: Path | None = None,
                 partner: str | None = None):
        self.hotkey, self.preset, self.vocab_size, self.pages = hotkey, preset, vocab_size, pages
        self.codec, self.carry_moments, self.device = codec, carry_moments, device
        self.step_budget = step_budget  # > 0: stops after that many inner steps, as a slow device at its deadline
        self.behaviour, self.shared_dir, self.partner = behaviour, shared_dir, partner
        self._full_model: torch.nn.Module | None = None
        self._optimizer_state: tuple[str, dict | None] = ("", None)  # (unit label, AdamW state)
        self._residuals: dict[str, Delta] = {}  # error feedback per unit label
        self._codec_memory: dict[str, dict] = {}
        self.last_sent: Delta | None = None  # what the validator decodes of this miner's last contribution
        self.bodies: dict[int, bytes] = {}  # own contributions by round (the outbox)
        self.last_base: State | None = None

    def train(self, order: WorkOrder, base: State, pages: list[int] | None = None, step_budget: int | None = None
              ) -> tuple[Delta, InnerStats]:
        """H inner steps (at most the budget) on the order's unit and pages; the pseudo-gradient
        in full-model coordinates."""
        spec = ShardSpec(order.unit.scheme, order.unit.index, order.unit.count)
        if spec.scheme == "full":
            if self._full_model is None:
                self._full_model = build_model(self.preset, self.vocab_size, seed=0, device=self.device)
            load_model_state(self._full_model, base)
            model, start = self._full_model, base
        else:
            model, plan = extract(base, spec, self.preset, self.vocab_size, self.device)
            start = sub_state(model)
        label, kept = self._optimizer_state
        if label != order.unit.label or not self.carry_moments:
            kept = None
        budget = self.step_budget if step_budget is None else step_budget
        stats = train_inner(model, self.pages.pages(order.pages if pages is None else pages), order.recipe,
                            seed=int(order.seed.hex()[:8], 16), loss_mode=loss_mode(spec), optimizer_state=kept,
                            should_stop=step_budget_stop(budget))
        self._optimizer_state = (order.unit.label, stats.optimizer_state if self.carry_moments else None)
        delta = pseudo_gradient(start, model)
        if spec.scheme != "full":
            delta = shard_delta_in_full_model(delta, plan, shapes_of(base))
        return delta, stats

    def contribute(self, order: WorkOrder, base: State,
                   observe: Callable[[str, int, Delta], None] | None = None,
                   others: dict[str, "Miner"] | None = None, start: State | None = None) -> Sent:
        """This round's contribution from the order's `base` (training from `start` when given: the
        base moved by an eager stand-in); `others` (hotkey -> miner) are the miners that already
        sent theirs this round (a partner's outbox)."""
        if self.codec is not None:
            delta, stats = self.train(order, base if start is None else start)
            if observe is not None:
                observe(self.hotkey, order.round_index, delta)
            sent, nbytes = self.codec.send(delta, self._codec_memory.setdefault(order.unit.label, {}))
            return Sent(self.hotkey, order.unit, stats, dense_bytes(shapes_of(delta)), nbytes, delta=sent)
        work = BenchRound(self, order, base, base if start is None else start, observe, others or {})
        body = contribution(self.behaviour, work)
        self.bodies[order.round_index] = body
        self.last_base = base
        stats = work.stats or InnerStats(0.0, 0.0, 0, 0.0)
        return Sent(self.hotkey, order.unit, stats, dense_bytes(shapes_of(base)), work.wire_bytes, body=body)


class BenchRound:
    """A behaviour's view of one work order in process (`template.miner.behaviours.RoundWork`)."""

    def __init__(self, miner: Miner, order: WorkOrder, base: State, start: State, observe, others: dict[str, Miner]):
        self.miner, self.hotkey, self._base, self.observe, self.others = miner, miner.hotkey, base, observe, others
        self._start = start  # where training starts: the base, or the base moved by an eager stand-in
        self.order = BenchOrder(order.round_index, order.seed.hex(), order.pages, order.recipe, order.unit,
                                order.base_checkpoint, work_order=order)
        self.train_ids, self.heldout_ids = miner.pages.train_ids, miner.pages.heldout_ids
        self.step_budget, self.shared_dir = miner.step_budget, miner.shared_dir
        self.stats: InnerStats | None = None
        self.wire_bytes = 0

    def base(self) -> State:
        return self._base

    def previous_base(self) -> State | None:
        return self.miner.last_base

    def train(self, pages: list[int], step_budget: int = 0) -> tuple[Delta, InnerStats]:
        delta, self.stats = self.miner.train(self.order.work_order, self._start, pages, step_budget or None)
        if self.observe is not None:
            self.observe(self.hotkey, self.order.round_index, delta)
        return delta, self.stats

    def compress(self, delta: Delta) -> CompressedUpdate:
        label = self.order.unit.label
        update, self.miner._residuals[label] = compress(delta, self.miner._residuals.get(label),
                                                        self.order.recipe.compression)
        return update

    def pack(self, update: CompressedUpdate, stats: InnerStats | None) -> bytes:
        order = self.order
        self.miner.last_sent = dict(decompress(update, shapes_of(self._base)))
        meta = ContributionMeta(
            netuid=NETUID, round_index=order.round_index, base_checkpoint=order.base_checkpoint,
            hotkey=self.hotkey, unit=order.unit, tokens_trained=stats.tokens if stats else 0,
            inner_steps=stats.steps if stats else 0, loss_first=stats.loss_first if stats else 0.0,
            loss_last=stats.loss_last if stats else 0.0, train_seconds=stats.seconds if stats else 0.0,
            compression=order.recipe.compression.codec_id)
        self.wire_bytes = wire_bytes(update)
        return encode_tensors(update.to_tensors(), meta.model_dump(mode="json"))

    def own_body(self, round_index: int) -> bytes | None:
        return self.miner.bodies.get(round_index)

    def partner_body(self, round_index: int) -> bytes | None:
        partner = self.others.get(self.miner.partner or "")
        return partner.bodies.get(round_index) if partner else None


@dataclass(frozen=True)
class BenchOrder:
    """The fields of a `TrainRequest` that behaviours read (no deadline in process: a partner's
    bytes are there or not)."""

    round_index: int
    seed: str
    pages: list[int]
    recipe: Recipe
    unit: UnitOfWork
    base_checkpoint: str
    deadline_unix: float = 0.0
    work_order: WorkOrder | None = None


# ------------------------------------------------------------------ validator


@dataclass
class Merge:
    reports: dict[str, ScoreReport]
    merged: list[str]  # hotkeys in the update, in the order summed
    update: Delta | None  # None: the model stays unchanged


def score_and_merge(model: torch.nn.Module, base: State, sent: list[Sent], assigned: dict[str, list[int]],
                    ctx: RoundContext, pages: PageStore, recipe: Recipe, preset: str, vocab_size: int,
                    scoring: ScoringConfig, heldout_count: int, control_count: int, min_per_unit: int = 2,
                    coldkeys: dict[str, str] | None = None) -> Merge:
    """The validator's work on one round's contributions (`model` holds `base`); they arrive in
    the order given. `coldkeys`: hotkey -> coldkey (default: each its own)."""
    units = {s.hotkey: s.unit for s in sent}
    if all(s.body is not None for s in sent):
        received = [Received(uid=i, hotkey=s.hotkey, assigned=assigned[s.hotkey], body=s.body, arrival_index=i,
                             unit=s.unit) for i, s in enumerate(sent)]
        reports, accepted = score_contributions(model, base, received, ctx, pages, recipe.compression, scoring,
                                                heldout_count, control_count, recipe.outer_lr, coldkeys,
                                                full_work_tokens(recipe, pages.page_len))
    elif all(s.delta is not None for s in sent):
        reports = {s.hotkey: ScoreReport(s.hotkey, i, i, accepted=True, reason=NOT_SCORED)
                   for i, s in enumerate(sent)}
        accepted = {s.hotkey: s.delta for s in sent}
    else:
        raise ValueError("one round's contributions are either all wire bytes or all research-codec deltas")
    order, update = aggregate_in_arrival_order(accepted, reports, units, preset, vocab_size, min_per_unit, coldkeys)
    return Merge(reports, order, update)


# ------------------------------------------------------------------ rounds


def full_model_unit(miner: int, round_index: int) -> UnitOfWork:
    return FULL


@dataclass
class RoundsSetting:
    preset: str
    vocab_size: int
    recipe: Recipe
    miners: int = 3
    rounds: int = 8
    eval_pages: int = 64  # fixed held-out pages of the loss curve
    codec: Codec | None = None  # None: the product's (recipe.compression, wire bytes, scored)
    unit_of: Callable[[int, int], UnitOfWork] = full_model_unit  # (miner, round) -> its unit
    carry_moments: bool = True  # False: zero AdamW moments every round (the miner before 2026-11-26)
    outer_step: Callable[[State, Delta], State] | None = None  # None: the product's step at recipe.outer_lr
    measure_step: bool = True  # the lead's choice of the step's size (measured_outer_step); False: always 1.0
    min_per_unit: int = 2  # the validator's aggregation minimum
    model_seed: int = 0
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    heldout_count: int = RoundConfig().heldout_pages  # the validator's defaults
    control_count: int = RoundConfig().control_pages
    label: str = "rounds"
    observe: Callable[[str, int, Delta], None] | None = None  # sees each pseudo-gradient before the codec
    outer_delay: int = 0  # 1: a round's merge is applied one round later (miners never wait for scoring)
    # With outer_delay, what stands in for the merge still in flight when a miner starts: "" nothing,
    # "own" its own last contribution, "mixed" its own / n plus the last merge (n-1) / n, "last" the
    # last merge applied again.
    eager: str = ""


@dataclass
class RoundsResult:
    heldout: list[float]  # index 0: before round 1; index r: after round r
    final_state: State = field(repr=False, default_factory=dict)
    inner_seconds: list[float] = field(default_factory=list)  # per miner-round
    wire_bytes: list[int] = field(default_factory=list)  # per contribution
    body_bytes: list[int] = field(default_factory=list)  # whole payloads (header and metadata too)
    dense_bytes: list[int] = field(default_factory=list)
    merged: list[int] = field(default_factory=list)  # contributions in each round's update
    reports: list[dict[str, ScoreReport]] = field(default_factory=list, repr=False)
    seconds: float = 0.0
    heldout_with_pending: float | None = None  # with outer_delay: after the merges in flight at the end

    @property
    def relative_drop(self) -> float:
        return 1.0 - self.heldout[-1] / self.heldout[0]

    @property
    def compression_ratio(self) -> float:
        return sum(self.dense_bytes) / max(1, sum(self.wire_bytes))

    @property
    def assignment_diffs(self) -> list[float]:
        """Assigned-minus-control gain of every contribution the validator tested."""
        return [r.assignment.diff for rs in self.reports for r in rs.values() if r.assignment is not None]

    @property
    def rejected(self) -> list[str]:
        return [r.reason for rs in self.reports for r in rs.values() if not r.accepted]


def run_rounds(s: RoundsSetting, pages: PageStore, heldout: torch.Tensor | None = None,
               initial_state: State | None = None, log: Callable[[str], None] | None = print) -> RoundsResult:
    """`s.rounds` rounds of `s.miners` honest miners and one validator that leads them."""
    model = build_model(s.preset, s.vocab_size, s.model_seed, device="cpu")
    if initial_state is not None:
        load_model_state(model, initial_state)
    base = model_state(model)
    if heldout is None:
        heldout = pages.pages(heldout_pages(EVAL_SEED, pages.heldout_ids, s.eval_pages))
    hotkeys = [miner_hotkey(m) for m in range(s.miners)]
    miners = [Miner(hk, s.preset, s.vocab_size, pages, s.codec, s.carry_moments) for hk in hotkeys]
    outer = s.outer_step or (lambda state, update: apply_outer_step(state, update, s.recipe.outer_lr))
    result = RoundsResult([float(per_sequence_loss(model, heldout).mean())])
    pending: list[Delta | None] = []  # merges scored but not yet applied (outer_delay)

    last_merge: list[Delta | None] = [None]

    def start_of(miner: Miner) -> State:
        """Where a miner trains from: the base, or (eager) the base moved by a stand-in for the
        round's merge still in flight."""
        if not (s.eager and s.outer_delay):
            return base
        own, last = miner.last_sent, last_merge[0]
        if s.eager == "own" and own is not None:
            return outer(base, own)
        if s.eager == "last" and last is not None:
            return outer(base, last)
        if s.eager == "mixed" and own is not None and last is not None:
            n = s.miners
            return outer(base, {k: own[k] / n + last[k] * (n - 1) / n for k in own})
        return base
    t0 = time.perf_counter()
    head_lr = s.recipe.outer_lr  # the outer lr of the step that made `base`
    for r in range(1, s.rounds + 1):
        checkpoint, assigned = state_hash(base), assignments(pages, s.recipe, hotkeys, r)
        sent = [miner.contribute(WorkOrder(r, bench_round_seed(r), checkpoint, assigned[miner.hotkey], s.recipe,
                                           s.unit_of(m, r)), base, s.observe, start=start_of(miner))
                for m, miner in enumerate(miners)]
        ctx = RoundContext(NETUID, r, checkpoint, bench_eval_seed(r))
        scored_at = s.recipe.model_copy(update={"outer_lr": head_lr})  # as the validator: the head's step
        merge = score_and_merge(model, base, sent, assigned, ctx, pages, scored_at, s.preset, s.vocab_size,
                                s.scoring, s.heldout_count, s.control_count, s.min_per_unit)
        if s.outer_delay:  # round r+1 trains from round r's base moved by round r-1's merge
            pending.append(merge.update)
            update = pending.pop(0) if len(pending) > s.outer_delay else None
        else:
            update = merge.update
        if update is not None and s.measure_step and s.outer_step is None:
            tokens = pages.pages(heldout_pages(ctx.eval_seed, pages.heldout_ids, s.heldout_count))
            head_lr, base, _ = measured_outer_step(base, update, s.recipe.outer_lr, state_loss(model, tokens))
            update = {k: v * (head_lr / s.recipe.outer_lr) for k, v in update.items()}  # the step taken
            load_model_state(model, base)
        elif update is not None:
            base = outer(base, update)
            load_model_state(model, base)
        last_merge[0] = update
        loss = float(per_sequence_loss(model, heldout).mean())
        result.heldout.append(loss)
        result.inner_seconds += [x.stats.seconds for x in sent]
        result.wire_bytes += [x.wire_bytes for x in sent]
        result.dense_bytes += [x.dense_bytes for x in sent]
        result.body_bytes += [len(x.body) for x in sent if x.body is not None]
        result.merged.append(len(merge.merged))
        result.reports.append(merge.reports)
        if log is not None:
            log(f"  {s.label} round {r}: held-out {loss:.4f} (drop {1 - loss / result.heldout[0]:.1%}), "
                f"merged {len(merge.merged)}/{len(sent)}, inner loop "
                f"{statistics.mean(x.stats.seconds for x in sent):.1f}s/miner ({time.perf_counter() - t0:.0f}s)")
    for update in pending:  # the merges still in flight at the end, as the next rounds would apply them
        if update is not None:
            base = outer(base, update)
    if pending:
        load_model_state(model, base)
        result.heldout_with_pending = float(per_sequence_loss(model, heldout).mean())
    result.final_state, result.seconds = base, time.perf_counter() - t0
    return result


# ------------------------------------------------------------------ the demo's convergence


def main(argv: list[str] | None = None) -> RoundsResult:
    p = argparse.ArgumentParser(description="In-process rounds of honest miners and one validator, "
                                            "with a preset's recipe (held-out loss per round)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--miners", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (a demo miner gets one)")
    p.add_argument("--topk", type=int, default=None, help="override the recipe's top-k per chunk")
    p.add_argument("--bits", type=int, default=None, help="override the recipe's value bits")
    p.add_argument("--no-compression", action="store_true", help="dense deltas (no wire format: merged unscored)")
    p.add_argument("--steps", type=int, default=None, help="override inner steps H")
    p.add_argument("--lr", type=float, default=None, help="override the inner learning rate")
    p.add_argument("--pages", type=int, default=None, help="override pages per miner")
    p.add_argument("--batch", type=int, default=None, help="override the batch size")
    p.add_argument("--warmup", type=int, default=None, help="override inner warmup steps")
    p.add_argument("--reset-moments", action="store_true", help="zero AdamW moments every round")
    p.add_argument("--outer-delay", type=int, default=0, choices=(0, 1),
                   help="1: each round's merge is applied one round later (overlapped rounds)")
    p.add_argument("--eager", default="", choices=("", "own", "mixed", "last"),
                   help="with --outer-delay 1, what stands in for the merge in flight when a miner starts: its own "
                        "last update, own/n + last merge (n-1)/n, or the last merge again")
    p.add_argument("--eval-pages", type=int, default=64)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--smoke", action="store_true", help="2 short rounds on 32-token pages (tests)")
    a = p.parse_args(argv)
    if a.smoke:
        a.rounds, a.steps, a.batch, a.pages, a.eval_pages = 2, 2, 2, 4, 8
    overrides = {"inner_steps": a.steps, "learning_rate": a.lr, "pages_per_miner": a.pages,
                 "batch_size": a.batch, "warmup_steps": a.warmup, "compression": {"topk": a.topk, "bits": a.bits}}
    workload = Workload.build(a.preset, "shakespeare", a.cache_dir, page_len=32 if a.smoke else 0,
                              recipe_overrides=overrides, torch_threads=a.threads)
    recipe = workload.recipe
    s = RoundsSetting(workload.preset_name, workload.vocab_size, recipe, a.miners, a.rounds, a.eval_pages,
                      DenseCodec() if a.no_compression else None, carry_moments=not a.reset_moments,
                      outer_delay=a.outer_delay, eager=a.eager)
    comp = "dense (merged unscored)" if a.no_compression else \
        f"top-{recipe.compression.topk}/{recipe.compression.chunk_elems} {recipe.compression.bits}-bit EF"
    print(f"rounds: preset={s.preset} vocab={s.vocab_size} miners={s.miners} H={recipe.inner_steps} "
          f"batch={recipe.batch_size}x{workload.pages.page_len} lr={recipe.learning_rate} "
          f"warmup={recipe.warmup_steps} pages={recipe.pages_per_miner} outer lr={recipe.outer_lr} "
          f"compression={comp} moments {'reset' if a.reset_moments else 'carried'} outer delay={a.outer_delay}"
          f"{' eager ' + a.eager if a.eager else ''} "
          f"threads={a.threads}", flush=True)
    res = run_rounds(s, workload.pages, log=lambda line: print(line, flush=True))
    for r, loss in enumerate(res.heldout):
        print(f"round {r}: held-out loss {loss:.4f}")
    print(f"drop after {s.rounds} rounds: {res.relative_drop:.1%}; compression {res.compression_ratio:.0f}x vs "
          f"fp32; inner loop {statistics.mean(res.inner_seconds):.1f}s mean, {max(res.inner_seconds):.1f}s max "
          f"per miner-round; total {res.seconds:.0f}s")
    if res.heldout_with_pending is not None:
        print(f"with the merges still in flight applied: held-out {res.heldout_with_pending:.4f} "
              f"(drop {1 - res.heldout_with_pending / res.heldout[0]:.1%})")
    print(f"merged per round: {res.merged} of {s.miners}")
    diffs = res.assignment_diffs
    if diffs:
        print(f"assigned-minus-control gain of tested contributions: min {min(diffs):+.4f} "
              f"mean {statistics.mean(diffs):+.4f} (positive in {sum(d > 0 for d in diffs)}/{len(diffs)})")
    for reason in sorted(set(res.rejected)):
        print(f"rejected {res.rejected.count(reason)}x: {reason}")
    write_json(a.out, {"setting": {"preset": s.preset, "vocab_size": s.vocab_size, "miners": s.miners,
                                   "rounds": s.rounds, "eval_pages": s.eval_pages, "threads": a.threads,
                                   "compressed": not a.no_compression, "carry_moments": s.carry_moments,
                                   "outer_delay": s.outer_delay, "eager": s.eager,
                                   "recipe": recipe.model_dump()},
                       "heldout": res.heldout, "heldout_with_pending": res.heldout_with_pending,
                       "merged": res.merged, "inner_seconds": res.inner_seconds,
                       "compression_ratio": res.compression_ratio, "assignment_diffs": diffs,
                       "rejected": res.rejected})
    return res


if __name__ == "__main__":
    main()
