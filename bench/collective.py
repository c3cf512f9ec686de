"""K in-process miners training DiLoCo-style vs one centralised data-parallel run.

Every DiLoCo arm runs the product's rounds (`bench/rounds.py`): the miner's training, error
feedback and contribution bytes, the validator's scoring, `aggregate_in_arrival_order`
(median-norm clip and mean per unit; shard units joined by coverage) and the outer step.
Arms see the same pages each round, so all arms train on the same tokens; the data-parallel
run takes R*H AdamW steps with K times the batch (the same pages) and the same inner
optimiser settings. Dense arms (`--topk 0`, `diloco-avg-dense`) have no wire format a
validator reads: they are merged unscored.

    python -m bench.collective --out bench/results/collective.json --plot bench/results/collective.png
    python -m bench.collective --smoke
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.common import page_store, print_table, save_loss_figure, write_json
from bench.nesterov import NesterovOuterOptimizer
from bench.rounds import EVAL_SEED, DenseCodec, RoundsSetting, assignments, miner_hotkey, run_rounds
from bench.shard_geometry import sub_shapes
from protocol.messages import UnitOfWork
from protocol.recipe import CompressionConfig, Recipe
from template.training.assignment import heldout_pages
from template.training.evaluation import per_sequence_loss
from template.training.inner_loop import _make_optimizer, batch_order, lr_at
from template.training.model import PRESETS, ModelPreset, build_model, configure_torch_threads, model_state
from template.training.presets import PRESET_SETTINGS
from template.training.shards import ShardSpec, shard_mask, shard_plan
from template.training.train_step import clip_and_step, forward_backward

ARMS = ("dp", "diloco-avg", "diloco-nesterov", "diloco-lrX", "diloco-avg-dense", "diloco-reset",
        "diloco-keep", "layers", "width", "width-roll", "width-pair", "width-same", "layers-roll")
# Every DiLoCo arm's miners carry their AdamW moments between rounds while they keep their
# unit, as the miner does; diloco-reset starts every round from zero moments (the miner before
# 2026-11-26); diloco-keep is the earlier name of what diloco-avg is now.
# Which shard miner m trains in round r (count shards, K miners):
#   fixed (`layers`, `width`): m % count, the same every round;
#   roll (`*-roll`, FedRolex): (m + r) % count, every miner moves to the next window each round;
#   pair (`width-pair`): two miners per window, K/2 windows a round, rolling by K/2 a round;
#   same (`width-same`, what `unit_for` hands out): every miner the window r % count.
DEFAULT_ARMS = ("dp", "diloco-avg", "diloco-nesterov", "layers", "width")


@dataclass
class Setting:
    preset: str
    vocab_size: int
    seq_len: int
    batch_size: int
    inner_steps: int
    rounds: int
    miners: int
    lr: float
    warmup: int
    eval_pages: int
    compression: CompressionConfig | None
    shard_count: int
    seed: int = 0
    shard_lr: float | None = None  # inner lr of shard miners (None: lr)
    shard_outer_lr: float | None = None  # outer lr when the arm trains shards (None: 1.0)

    def recipe(self, lr: float | None = None, outer_lr: float = 1.0) -> Recipe:
        """The round's recipe: one pass over H*B pages a miner-round."""
        return Recipe(inner_steps=self.inner_steps, batch_size=self.batch_size, learning_rate=lr or self.lr,
                      warmup_steps=self.warmup, pages_per_miner=self.inner_steps * self.batch_size,
                      compression=self.compression or CompressionConfig(), outer_lr=outer_lr)

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {
            "compression": None if self.compression is None else self.compression.model_dump()}


@dataclass
class ArmResult:
    arm: str
    heldout: list[float]  # index 0 before training, r after round r
    tokens_per_round: int
    flops_per_token: float  # per miner, forward + backward as the shard actually runs it
    trained_fraction: float
    seconds: float
    miner_seconds: list[float] = field(default_factory=list)
    wire_bytes: list[int] = field(default_factory=list)  # per contribution as sent (packed tensors)
    body_bytes: list[int] = field(default_factory=list)  # whole payloads, header and metadata too
    dense_bytes: list[int] = field(default_factory=list)  # the same tensors as dense fp32
    merged: list[int] = field(default_factory=list)  # contributions in each round's update

    def compute_at(self, r: int) -> float:
        return r * self.tokens_per_round * self.flops_per_token


def round_pages(store, s: Setting, r: int) -> list[list[int]]:
    """Pages of each miner in round r (the same for every arm): H * B pages, one pass."""
    hotkeys = [miner_hotkey(m) for m in range(s.miners)]
    pages = assignments(store, s.recipe(), hotkeys, r)
    return [pages[hk] for hk in hotkeys]


# ------------------------------------------------------------------ miner FLOPs


def miner_flops_per_token(spec: ShardSpec, preset: ModelPreset, vocab: int,
                          shapes: dict[str, tuple[int, ...]], seq: int) -> tuple[float, float]:
    """(FLOPs per trained token, trained fraction): 2*N_fwd + 2*N_backprop (activation grads
    from the top down to the lowest trained unit) + 2*N_trained (weight grads) + attention."""
    plan = shard_plan(spec, preset, vocab, shapes)
    masks = shard_mask(spec, preset, vocab, shapes)
    n_total = sum(math.prod(v) for v in shapes.values())
    n_trained = sum(int(m.sum()) for m in masks.values())
    hd = preset.d_model // preset.n_heads
    attn_fwd_layer = 4.0 * seq * preset.n_heads * hd
    if spec.scheme == "width":
        sub = sub_shapes(plan, shapes)
        # the sub-model runs all its (sliced) weights plus the full-vocab head and embedding
        n_fwd = sum(math.prod(v) for k, v in sub.items() if ".table." not in k) + \
            2 * vocab * preset.d_model
        frac_heads = sub[next(k for k in sub if k.endswith("q_proj.weight"))][0] / preset.d_model
        attn = 3 * attn_fwd_layer * preset.n_layers * frac_heads
        return 2 * n_fwd + 2 * n_fwd + 2 * n_trained + attn, n_trained / n_total
    lowest = min((int(n.split(".")[2]) for n in plan if n.startswith("model.layers.")),
                 default=preset.n_layers)
    if any(n.startswith("model.embed_tokens.") for n in plan):
        lowest = 0
    n_above = sum(math.prod(v) for n, v in shapes.items()
                  if (n.startswith("model.layers.") and int(n.split(".")[2]) >= lowest)
                  or n.startswith("lm_head.") or n.startswith("model.norm."))
    attn = attn_fwd_layer * (preset.n_layers + 2 * (preset.n_layers - lowest))
    return 2 * n_total + 2 * n_above + 2 * n_trained + attn, n_trained / n_total


# ------------------------------------------------------------------ arms


def run_dp(store, s: Setting, heldout: torch.Tensor) -> ArmResult:
    """Centralised data parallel: one AdamW over R*H steps of K*B pages (the same pages), with
    the miner's optimizer, step and clip (`train_step`) scheduled over the whole run."""
    model = build_model(s.preset, s.vocab_size, s.seed, "cpu")
    recipe = s.recipe()
    steps_total = s.rounds * s.inner_steps
    opt = _make_optimizer(model, s.lr, recipe.weight_decay, recipe.betas)
    params = [p for p in model.parameters() if p.requires_grad]
    fwd_bwd = forward_backward(model, False, "auto")
    losses = [float(per_sequence_loss(model, heldout).mean())]
    t0 = time.perf_counter()
    step = 0
    for r in range(1, s.rounds + 1):
        pages = [p for miner in round_pages(store, s, r) for p in miner]
        tokens = store.pages(pages)
        model.train()
        for idx in batch_order(len(pages), s.inner_steps, s.batch_size * s.miners, s.seed + r):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, steps_total, s.lr, s.warmup, recipe.final_lr_frac)
            opt.zero_grad(set_to_none=True)
            fwd_bwd(tokens[idx])
            clip_and_step(opt, params, recipe.grad_clip)
            step += 1
        losses.append(float(per_sequence_loss(model, heldout).mean()))
        print(f"  dp round {r}: held-out {losses[-1]:.4f} ({time.perf_counter() - t0:.0f}s)",
              flush=True)
    shapes = {n: tuple(t.shape) for n, t in model_state(model).items()}
    fpt, _ = miner_flops_per_token(ShardSpec("full"), PRESETS[s.preset], s.vocab_size, shapes,
                                   s.seq_len)
    return ArmResult("dp", losses, s.miners * s.inner_steps * s.batch_size * s.seq_len, fpt, 1.0,
                     time.perf_counter() - t0)


def shard_index(policy: str, m: int, r: int, count: int, miners: int) -> int:
    """The shard miner m trains in round r under `policy` (see ARMS)."""
    if policy == "fixed":
        return m % count
    if policy == "roll":
        return (m + r) % count
    if policy == "pair":
        per_round = max(1, miners // 2)
        return (m % per_round + r * per_round) % count
    if policy == "same":
        return r % count
    raise ValueError(f"unknown shard policy {policy!r}")


def run_diloco(store, s: Setting, heldout: torch.Tensor, arm: str) -> ArmResult:
    """K miners, full model or `count` shards of one scheme (which shard: `shard_index`), in
    the product's rounds (`bench.rounds.run_rounds`)."""
    preset = PRESETS[s.preset]
    shapes = {n: tuple(t.shape) for n, t in model_state(build_model(s.preset, s.vocab_size, s.seed, "cpu")).items()}
    scheme, _, policy = arm.partition("-")
    if scheme not in ("layers", "width"):
        scheme, policy = "full", ""
    policy = policy or "fixed"

    def unit_of(m: int, r: int) -> UnitOfWork:
        if scheme == "full":
            return UnitOfWork()
        return UnitOfWork(kind="shard", scheme=scheme, count=s.shard_count,
                          index=shard_index(policy, m, r, s.shard_count, s.miners))

    dense = s.compression is None or arm == "diloco-avg-dense"
    outer_lr = float(arm.removeprefix("diloco-lr")) if arm.startswith("diloco-lr") else 1.0
    if scheme != "full" and s.shard_outer_lr is not None:
        outer_lr = s.shard_outer_lr
    inner_lr = s.lr if scheme == "full" or s.shard_lr is None else s.shard_lr
    nesterov = NesterovOuterOptimizer(0.7, 0.9) if arm == "diloco-nesterov" else None
    specs = [ShardSpec(u.scheme, u.index, u.count) for u in (unit_of(m, 1) for m in range(s.miners))]
    fpts = [miner_flops_per_token(sp, preset, s.vocab_size, shapes, s.seq_len) for sp in specs]
    setting = RoundsSetting(
        s.preset, s.vocab_size, s.recipe(inner_lr, outer_lr), s.miners, s.rounds, s.eval_pages,
        codec=DenseCodec() if dense else None, unit_of=unit_of, carry_moments=arm != "diloco-reset",
        outer_step=nesterov.step if nesterov else None,
        # the fixed and rolling policies give a window one miner (the validator hands out pairs)
        min_per_unit=2 if scheme == "full" else 1, model_seed=s.seed, label=arm)
    res = run_rounds(setting, store, heldout, log=lambda line: print(line, flush=True))
    return ArmResult(arm, res.heldout, s.miners * s.inner_steps * s.batch_size * s.seq_len,
                     sum(f for f, _ in fpts) / len(fpts), sum(f for _, f in fpts) / len(fpts), res.seconds,
                     res.inner_seconds, res.wire_bytes, res.body_bytes, res.dense_bytes, res.merged)


def _is_outer_lr_arm(arm: str) -> bool:
    """`diloco-lr<X>`: plain-average DiLoCo with outer learning rate X (the outer-lr sweep)."""
    try:
        return arm.startswith("diloco-lr") and float(arm.removeprefix("diloco-lr")) > 0
    except ValueError:
        return False


def loss_at_compute(res: ArmResult, compute: float) -> float:
    """Held-out loss of `res` interpolated (linearly in rounds) at cumulative miner compute."""
    per_round = res.compute_at(1)
    x = compute / per_round
    if x >= len(res.heldout) - 1:
        return res.heldout[-1]
    lo = int(math.floor(x))
    return res.heldout[lo] + (x - lo) * (res.heldout[lo + 1] - res.heldout[lo])


def plot(results: list[ArmResult], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for res in results:
        rounds = range(len(res.heldout))
        axes[0].plot([r * res.tokens_per_round / 1e6 for r in rounds], res.heldout, label=res.arm)
        axes[1].plot([res.compute_at(r) / 1e12 for r in rounds], res.heldout, label=res.arm)
    axes[0].set_xlabel("tokens trained (M)")
    axes[1].set_xlabel("training compute, all miners (TFLOP)")
    save_loss_figure(fig, axes, path)


def main(argv: list[str] | None = None) -> list[ArmResult]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--vocab", type=int, default=None)
    p.add_argument("--seq", type=int, default=128, help="page length (tokens per sequence)")
    p.add_argument("--batch", type=int, default=8, help="sequences per miner inner step")
    p.add_argument("--steps", type=int, default=10, help="H, inner steps per round")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--miners", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--eval-pages", type=int, default=64)
    p.add_argument("--topk", type=int, default=None, help="per 4096-chunk; 0 = no compression")
    p.add_argument("--shard-count", type=int, default=4, help="shards per model (4: quarters)")
    p.add_argument("--shard-lr", type=float, default=None, help="inner lr of shard arms")
    p.add_argument("--shard-outer-lr", type=float, default=None, help="outer lr of shard arms")
    p.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                   help=f"comma list of {ARMS} (diloco-lrX: outer lr X, e.g. diloco-lr0.7)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument("--smoke", action="store_true", help="tiny preset, 2 rounds, seconds")
    a = p.parse_args(argv)
    if a.smoke:
        a.preset, a.seq, a.batch, a.steps, a.rounds, a.miners, a.eval_pages = \
            "tiny", 32, 2, 2, 2, 4, 8
    configure_torch_threads(a.threads)
    defaults = PRESET_SETTINGS[a.preset]
    vocab = a.vocab or defaults.vocab_size
    comp = defaults.recipe.compression
    if a.topk is not None:
        comp = None if a.topk == 0 else comp.model_copy(update={"topk": a.topk})
    s = Setting(a.preset, vocab, a.seq, a.batch, a.steps, a.rounds, a.miners, a.lr, a.warmup,
                a.eval_pages, comp, a.shard_count, shard_lr=a.shard_lr,
                shard_outer_lr=a.shard_outer_lr)
    store = page_store(vocab, a.seq)
    heldout = store.pages(heldout_pages(EVAL_SEED, store.heldout_ids, a.eval_pages))
    arms = [x.strip() for x in a.arms.split(",") if x.strip()]
    unknown = sorted(a for a in arms if a not in ARMS and not _is_outer_lr_arm(a))
    if unknown:
        raise SystemExit(f"unknown arms {unknown}; choose from {ARMS}")
    comp_label = "off" if comp is None else f"top-{comp.topk}/{comp.chunk_elems} {comp.bits}-bit EF"
    print(f"collective: preset={a.preset} vocab={vocab} K={a.miners} R={a.rounds} H={a.steps} "
          f"batch={a.batch}x{a.seq} lr={a.lr} warmup={a.warmup} compression={comp_label} "
          f"shards={a.shard_count} threads={a.threads} held-out={a.eval_pages} pages")
    t0 = time.perf_counter()
    results = []
    for arm in arms:
        print(f"arm {arm}", flush=True)
        results.append(run_dp(store, s, heldout) if arm == "dp"
                       else run_diloco(store, s, heldout, arm))
    by = {r.arm: r for r in results}
    ref = by.get("diloco-avg")
    rows = []
    for res in results:
        row = {"arm": res.arm, "final": res.heldout[-1], "trained": res.trained_fraction,
               "tokens": len(res.heldout[:-1]) * res.tokens_per_round / 1e6,
               "fpt": res.flops_per_token / 1e6, "seconds": res.seconds}
        if "dp" in by:
            row["vs_dp"] = res.heldout[-1] / by["dp"].heldout[-1]
        if ref is not None:
            row["vs_diloco"] = res.heldout[-1] / ref.heldout[-1]
            if res.arm != "dp":
                row["vs_diloco_eq_compute"] = res.heldout[-1] / loss_at_compute(
                    ref, res.compute_at(len(res.heldout) - 1))
        rows.append(row)
    print_table(rows, [("arm", "arm", "s"), ("final", "final loss", ".4f"),
                       ("vs_dp", "/dp", ".3f"), ("vs_diloco", "/diloco (eq tokens)", ".3f"),
                       ("vs_diloco_eq_compute", "/diloco (eq miner compute)", ".3f"),
                       ("trained", "trained frac", ".3f"), ("fpt", "MFLOP/token", ".1f"),
                       ("tokens", "Mtokens", ".2f"), ("seconds", "seconds", ".0f")],
                title=f"held-out loss after {a.rounds} rounds (initial "
                      f"{results[0].heldout[0]:.4f})")
    print(f"total {time.perf_counter() - t0:.0f}s")
    write_json(a.out, {"setting": s.to_json(), "rows": rows,
                       "curves": {r.arm: r.heldout for r in results},
                       "miner_seconds": {r.arm: r.miner_seconds for r in results},
                       "merged": {r.arm: r.merged for r in results if r.merged}})
    if a.plot is not None:
        plot(results, a.plot)
    return results


if __name__ == "__main__":
    main()
