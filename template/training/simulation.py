"""In-process DiLoCo rounds (honest miners + one aggregator): the convergence check of the demo.

    python -m template.training.simulation --rounds 8 --miners 3
    python -m template.training.simulation --no-compression
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from loguru import logger

from template.training.assignment import (assigned_pages, control_pages, eval_seed, heldout_pages,
                                          round_seed)
from template.training.compression import (CompressionConfig, compress, decompress, dense_bytes,
                                            shapes_of, wire_bytes)
from template.training.config import TrainingConfig
from template.training.evaluation import applied_delta, per_sequence_loss
from template.training.inner_loop import pseudo_gradient, train_inner
from template.training.model import build_model, configure_torch_threads, load_model_state, model_state
from template.training.outer_step import apply_outer_step
from template.training.pages import PageStore, build_page_store

DEFAULT_CACHE = Path.home() / ".cache" / "deai"


@dataclass
class SimulationResult:
    heldout_loss: list[float]  # index 0: before round 1; index r: after round r
    inner_seconds: list[float] = field(default_factory=list)
    compression_ratio: float = 1.0
    # per miner-round: mean paired loss gain on own assigned pages minus on control pages
    assigned_minus_control: list[float] = field(default_factory=list)

    @property
    def relative_drop(self) -> float:
        return 1.0 - self.heldout_loss[-1] / self.heldout_loss[0]


def fake_block_hash(round_index: int) -> str:
    return "0x" + hashlib.sha256(f"sim-block-{round_index}".encode()).hexdigest()


def median_norm_clip(deltas: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """Scale each contribution's tensors down to the per-tensor median norm over contributions."""
    clipped: list[dict[str, torch.Tensor]] = [{} for _ in deltas]
    for name in deltas[0]:
        norms = [float(d[name].norm()) for d in deltas]
        med = statistics.median(norms)
        for i, d in enumerate(deltas):
            factor = min(1.0, med / norms[i]) if norms[i] > 0 else 1.0
            clipped[i][name] = d[name] * factor
    return clipped


def mean_delta(deltas: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {name: torch.stack([d[name] for d in deltas]).mean(dim=0) for name in deltas[0]}


def assigned_vs_control_gain(model: torch.nn.Module, delta: dict[str, torch.Tensor],
                             scale: float, assigned: torch.Tensor, control: torch.Tensor) -> float:
    """Gauntlet-style proof of work: how much more the update helps the miner's own pages."""
    before_a, before_c = per_sequence_loss(model, assigned), per_sequence_loss(model, control)
    with applied_delta(model, delta, scale):
        gain_a = before_a - per_sequence_loss(model, assigned)
        gain_c = before_c - per_sequence_loss(model, control)
    return float(gain_a.mean() - gain_c.mean())


def run_simulation(cfg: TrainingConfig, store: PageStore, rounds: int = 8, miners: int = 3,
                   compression: CompressionConfig | None = None, eval_pages: int = 64,
                   proof_pages: int = 16) -> SimulationResult:
    """Rounds of: every miner trains from the same base, compresses, the aggregator clips to
    the median norm, averages and takes the outer step; held-out loss is logged per round."""
    model = build_model(cfg.preset, cfg.vocab_size, cfg.model_seed, device="cpu")
    base = model_state(model)
    shapes = shapes_of(base)
    heldout = store.pages(heldout_pages(b"sim-eval", store.heldout_ids, eval_pages))
    residuals: list[dict[str, torch.Tensor] | None] = [None] * miners
    optimizer_states: list[dict | None] = [None] * miners  # carried over as the miner does
    result = SimulationResult([float(per_sequence_loss(model, heldout).mean())])
    ratios: list[float] = []
    logger.info(f"sim: round 0 held-out loss {result.heldout_loss[0]:.4f}")
    for r in range(1, rounds + 1):
        seed = round_seed(fake_block_hash(r), r)
        deltas = []
        for m in range(miners):
            load_model_state(model, base)
            pages = assigned_pages(seed, f"miner-{m}", store.train_ids, cfg.pages_per_assignment)
            stats = train_inner(model, store.pages(pages), cfg.inner_steps, cfg.batch_size,
                                cfg.lr, cfg.weight_decay, cfg.betas, cfg.warmup,
                                seed=r * 1000 + m, final_lr_frac=cfg.final_lr_frac,
                                optimizer_state=optimizer_states[m])
            if cfg.carry_optimizer_state:
                optimizer_states[m] = stats.optimizer_state
            result.inner_seconds.append(stats.seconds)
            delta = pseudo_gradient(base, model)
            if compression is not None:
                update, residuals[m] = compress(delta, residuals[m], compression)
                ratios.append(dense_bytes(shapes) / wire_bytes(update))
                delta = decompress(update, shapes)
            deltas.append(delta)
            load_model_state(model, base)
            control = control_pages(eval_seed(fake_block_hash(r + 1000)), f"miner-{m}",
                                    store.train_ids, pages, proof_pages)
            result.assigned_minus_control.append(assigned_vs_control_gain(
                model, delta, cfg.outer_lr / miners, store.pages(pages[:proof_pages]),
                store.pages(control)))
        base = apply_outer_step(base, mean_delta(median_norm_clip(deltas)), cfg.outer_lr)
        load_model_state(model, base)
        loss = float(per_sequence_loss(model, heldout).mean())
        result.heldout_loss.append(loss)
        inner = result.inner_seconds[-miners:]
        logger.info(f"sim: round {r} held-out loss {loss:.4f} "
                    f"(drop {1 - loss / result.heldout_loss[0]:.1%}), "
                    f"inner loop {statistics.mean(inner):.1f}s/miner, assigned-control gain "
                    f"{statistics.mean(result.assigned_minus_control[-miners:]):+.4f}")
    if ratios:
        result.compression_ratio = statistics.mean(ratios)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--miners", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--topk", type=int, default=None, help="override the config's top-k")
    parser.add_argument("--bits", type=int, default=None, help="override the config's value bits")
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument("--steps", type=int, default=None, help="override inner steps H")
    parser.add_argument("--lr", type=float, default=None, help="override inner lr")
    parser.add_argument("--pages", type=int, default=None, help="override pages per assignment")
    parser.add_argument("--batch", type=int, default=None, help="override batch size")
    parser.add_argument("--warmup", type=int, default=None, help="override inner warmup steps")
    args = parser.parse_args(argv)
    configure_torch_threads(args.threads)
    overrides = {"inner_steps": args.steps, "lr": args.lr, "pages_per_assignment": args.pages,
                 "batch_size": args.batch, "warmup": args.warmup}
    cfg = dataclasses.replace(TrainingConfig(),
                              **{k: v for k, v in overrides.items() if v is not None})
    comp = None if args.no_compression else cfg.compression
    if comp is not None:
        comp = dataclasses.replace(comp, topk=args.topk or comp.topk, bits=args.bits or comp.bits)
    store = build_page_store(args.cache_dir, cfg.vocab_size, cfg.page_len, cfg.heldout_fraction)
    t0 = time.perf_counter()
    res = run_simulation(cfg, store, args.rounds, args.miners, comp)
    label = "off" if comp is None else f"topk={comp.topk}/{comp.chunk_elems} bits={comp.bits}"
    print(f"config: H={cfg.inner_steps} batch={cfg.batch_size}x{cfg.page_len} lr={cfg.lr} "
          f"warmup={cfg.warmup} "
          f"pages={cfg.pages_per_assignment} preset={cfg.preset} vocab={cfg.vocab_size}")
    print(f"compression: {label}  (ratio vs fp32 {res.compression_ratio:.0f}x)")
    for r, loss in enumerate(res.heldout_loss):
        print(f"round {r}: held-out loss {loss:.4f}")
    print(f"drop after {args.rounds} rounds: {res.relative_drop:.1%}; inner loop "
          f"{statistics.mean(res.inner_seconds):.1f}s mean, {max(res.inner_seconds):.1f}s max "
          f"per miner-round on {args.threads} thread(s); total {time.perf_counter() - t0:.0f}s")
    amc = res.assigned_minus_control
    print(f"assigned-minus-control gain per miner-round: min {min(amc):+.4f} "
          f"mean {statistics.mean(amc):+.4f} (positive in {sum(g > 0 for g in amc)}/{len(amc)})")


if __name__ == "__main__":
    main()
