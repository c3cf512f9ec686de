"""One unit of work trained by a torchrun team (the miner's own code: `TeamLead.train` on the
first process, `follow_orders` on the others): tokens/s, peak memory per process, and the
pseudo-gradient, to compare engines and process counts.

    torchrun --standalone --nproc_per_node 2 -m bench.team --preset tiny --engine ddp,fsdp --steps 6
    torchrun --standalone --nproc_per_node 8 -m bench.team --preset 1b --engine fsdp --batch 64 --steps 10
    torchrun --standalone --nproc_per_node 1 -m bench.team --preset 1b --engine ddp --batch 8 --steps 10

Without --base/--tokens the weights are the preset's seed-0 initialisation and the pages random
tokens. With --delta-out the first process saves the pseudo-gradient (tests compare it with the
one-process inner loop on the same pages); --out writes the figures, the recipe, seed and pages.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import torch

from protocol.messages import TrainRequest
from template.miner.team_lead import TeamLead, follow_orders
from template.training.checkpoint import load_checkpoint, save_checkpoint, state_hash
from template.training.model import build_model, configure_torch_threads, model_state
from template.training.pages import PageStore
from template.training.presets import PRESET_SETTINGS
from template.training.team import Team, TeamEnv
from template.training.workload import Workload

SEED_HEX = "5eed" * 16


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--engine", default="ddp", help="ddp | fsdp, or several in turn: ddp,fsdp (one team)")
    p.add_argument("--steps", type=int, default=6, help="inner steps")
    p.add_argument("--batch", type=int, default=8, help="global batch (sequences per step, shared by the team)")
    p.add_argument("--pages", type=int, default=64, help="random pages when --tokens is not given")
    p.add_argument("--page-len", type=int, default=0, help="0: the preset's")
    p.add_argument("--vocab", type=int, default=0, help="0: the preset's")
    p.add_argument("--base", default="", help="a checkpoint (safetensors) to start from")
    p.add_argument("--tokens", default="", help="safetensors with `tokens` [pages, page_len] to train on")
    p.add_argument("--device", default="auto", help="auto (a GPU per process when there are GPUs) | cpu | cuda:N "
                                                   "(every process on that GPU; needs --backend gloo)")
    p.add_argument("--backend", default="", help="process group backend (default: nccl on GPUs, gloo on a CPU)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    p.add_argument("--delta-out", default="", help="save the pseudo-gradient here (first process); with several "
                                                   "engines ENGINE in the name is replaced by each")
    p.add_argument("--out", default="", help="write the figures here as JSON (first process)")
    return p.parse_args(argv)


def unit_of_work(a: argparse.Namespace) -> tuple[Workload, TrainRequest, dict[str, torch.Tensor]]:
    settings = PRESET_SETTINGS[a.preset]
    vocab = a.vocab or settings.vocab_size
    recipe = settings.recipe.with_overrides(inner_steps=a.steps, batch_size=a.batch, warmup_steps=min(2, a.steps))
    if a.tokens:
        tokens = load_checkpoint(Path(a.tokens))["tokens"].long()
    else:
        gen = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, vocab, (a.pages, a.page_len or settings.page_len), generator=gen)
    base = load_checkpoint(Path(a.base)) if a.base else model_state(build_model(a.preset, vocab, 0, "cpu"))
    # Every page is the unit's: no held-out split here.
    pages = PageStore(tokens, list(range(tokens.shape[0])), [], hashlib.sha256(tokens.numpy().tobytes()).hexdigest()[:16])
    workload = Workload(a.preset, vocab, pages, recipe)
    digest = state_hash(base)
    order = TrainRequest(netuid=0, round_index=0, round_block=0, seed=SEED_HEX, base_checkpoint=digest,
                         dataset=pages.digest, model_preset=a.preset, pages=pages.train_ids[:4096], recipe=recipe,
                         checkpoint_url=f"http://127.0.0.1/v1/checkpoint/{digest}", deadline_block=1,
                         deadline_unix=time.time() + 24 * 3600)
    return workload, order, base


def main(argv: list[str] | None = None) -> list[dict] | None:
    a = parse(argv)
    env = TeamEnv.from_environ()
    if env is None and "RANK" in os.environ:  # torchrun --nproc_per_node 1: a team of one, the baseline
        env = TeamEnv(0, 1, 0)
    if env is None:
        raise SystemExit("run under torchrun (--nproc_per_node 1 for the one-process baseline)")
    configure_torch_threads(a.threads)
    team = Team(env, a.device, a.backend)
    results = []
    try:
        if not team.is_first:
            follow_orders(team, a.threads)
            return None
        workload, order, base = unit_of_work(a)
        seed = int(order.seed[:8], 16)
        for engine in a.engine.split(","):
            lead = TeamLead(team, engine)  # the followers rebuild their model for each engine
            delta, stats = lead.train(order, workload, base, seed, order.deadline_unix, lambda: False)
            results.append(report(a, engine, env.world, team, workload, order, seed, stats, lead.trainer.peak_memory_gb))
            if a.delta_out:
                save_checkpoint(Path(a.delta_out.replace("ENGINE", engine)), delta)
        lead.finish()
    finally:
        team.close()
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=2))
    return results


def report(a, engine, world, team, workload, order, seed, stats, peaks) -> dict:
    print(f"team: {a.preset} {engine} x{world} ({team.device.type}): {stats.steps} steps, "
          f"{stats.tokens_per_second:,.0f} tok/s, loss {stats.loss_first:.3f} -> {stats.loss_last:.3f}, "
          f"peak memory per process {peaks} GB")
    return {"preset": a.preset, "engine": engine, "processes": world, "device": team.device.type,
            "steps": stats.steps, "batch": a.batch, "page_len": workload.pages.page_len,
            "tokens_per_second": round(stats.tokens_per_second, 1), "seconds": round(stats.seconds, 2),
            "first_step_seconds": round(stats.first_step_seconds, 2), "loss_first": stats.loss_first,
            "loss_last": stats.loss_last, "peak_memory_gb": peaks,
            "recipe": order.recipe.model_dump(mode="json"), "seed": seed, "pages": list(order.pages)}


if __name__ == "__main__":
    main()
