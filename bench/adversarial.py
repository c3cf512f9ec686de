"""The public adversarial harness on the real local subnet: simnet, a validator and honest miners
of different speeds (`--speeds`: the share of the round's H inner steps each one's device
completes), plus any mix of attackers (`--attackers NAME:COUNT,...`, the behaviours of
template/miner/behaviours.py), each its own process started by the main job's runner
(scripts/run_local_subnet.py). At the end it reads incentive and emission from the chain's
metagraph, each miner's reported compute from its contributions, the global model's held-out
loss from the validator and its loss on sealed pages (which no validator ever evaluates on) from
the final checkpoint, and writes a table, a PNG and the bars they are held to.

    python -m bench.adversarial --honest 3 --speeds 1,1,0.33 --attackers zero:1,noise:1 --out runs/adv-a
    python -m bench.adversarial --honest 3 --attackers "" --out runs/adv-free      # the attack-free baseline
    python -m bench.adversarial ... --baseline runs/adv-free/result.json           # adds the loss bars
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from bench.adversary import (MinerResult, MinerSpec, RunResult, add_run_arguments, bars_table, markdown_table,
                             miner_specs, write)
from scripts import run_local_subnet as runner
from template.chain import bootstrap
from template.miner.outbox import Outbox
from template.training.assignment import sealed_pages
from template.training.checkpoint import load_checkpoint
from template.training.evaluation import per_sequence_loss
from template.training.model import load_model_state
from template.training.presets import PRESET_SETTINGS
from template.training.workload import Workload, initial_seed
from template.validation.round import claimed_tokens

REPO = Path(__file__).resolve().parents[1]


def plans(specs: list[MinerSpec], workdir: Path) -> list[runner.MinerPlan]:
    """The runner's miners; a sybil group's wallets (one coldkey, a hotkey each) are made here so
    its shared directory can list the group's hotkeys before anyone starts."""
    out, groups = [], {}
    for spec in specs:
        flags: list[str] = []
        if spec.step_budget:
            flags += ["--miner.inner_step_budget", str(spec.step_budget)]
        if spec.partner:
            flags += ["--miner.copy_from_dir", "{workdir}/" + spec.partner]
        if spec.group:
            flags += ["--miner.shared_dir", "{workdir}/shared-" + spec.group]
            wallet = bootstrap.create_wallet(workdir / "wallets", spec.group, hotkey=spec.name)
            groups.setdefault(spec.group, []).append(wallet.hotkey.ss58_address)
        out.append(runner.MinerPlan(spec.name, spec.behaviour, tuple(flags), coldkey=spec.group))
    for group, hotkeys in groups.items():
        (workdir / f"shared-{group}").mkdir(parents=True, exist_ok=True)
        (workdir / f"shared-{group}" / "members").write_text("\n".join(sorted(hotkeys)) + "\n")
    return out


def reported_compute(state_dir: Path) -> int:
    """Inner-loop tokens the miner reported in the contributions it kept (its outbox)."""
    outbox = Outbox(state_dir / "outbox", keep_rounds=10_000)
    return sum(claimed_tokens(outbox.body(r)) or 0 for r in outbox.rounds())


def sealed_losses(workdir: Path, preset: str, cache_dir: Path) -> list[float]:
    """The loss on the sealed pages of the initial model and of the validator's final checkpoint."""
    validator = workdir / "validator"
    records = [json.loads(line) for line in (validator / "rounds.jsonl").read_text().splitlines() if line.strip()]
    state = json.loads((validator / "validator_state.json").read_text())
    workload = Workload.build(preset, "shakespeare", cache_dir)
    model = workload.initial_model(initial_seed(records[-1]["netuid"]), torch.device("cpu"))
    tokens = workload.pages.pages(sealed_pages(workload.pages.heldout_ids))
    before = float(per_sequence_loss(model, tokens).mean())
    load_model_state(model, load_checkpoint(validator / "checkpoints" / f"{state['checkpoint']}.safetensors"))
    return [before, float(per_sequence_loss(model, tokens).mean())]


def collect(specs: list[MinerSpec], workdir: Path, args, seconds: float) -> RunResult:
    summary = json.loads((workdir / "summary.json").read_text())
    by_name = {m["name"]: m for m in summary["miners"]}
    results = [MinerResult(s.name, s.behaviour, by_name[s.name]["uid"], by_name[s.name]["mean_score"],
                           by_name[s.name]["rounds_accepted"], by_name[s.name]["incentive"],
                           by_name[s.name]["emission"], reported_compute(workdir / s.name), s.speed) for s in specs]
    heldout = [summary["initial_heldout_loss"]] + [r["heldout_loss"] for r in summary["rounds"]]
    return RunResult(f"local subnet: {args.attackers or 'attack-free'}", results, heldout,
                     sealed_losses(workdir, args.preset, Path(args.cache_dir)), len(summary["rounds"]), seconds,
                     {"specs": [s.__dict__ for s in specs], "argv": sys.argv[1:]})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(p)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--inner-steps", type=int, default=18,
                   help="H (0: the preset's 30); 18 lets ten processes finish a round's H on two cores, and H//4 = 4 is "
                        "22%% of it")
    p.add_argument("--round-blocks", type=int, default=280,
                   help="scoring ten miners on two shared cores takes 15-45 s: a round must hold it, or the next is skipped")
    p.add_argument("--train-blocks", type=int, default=80,
                   help="ten miner processes share the CPU: the honest ones must finish H in the window")
    p.add_argument("--tempo", type=int, default=30,
                   help="subnet tempo: weights count as active for 1.39 tempos, which must outlast a round")
    p.add_argument("--baseline", type=Path, default=None, help="an attack-free run's result.json (the loss bars)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "deai"))
    p.add_argument("--check", action="store_true", help="exit 1 when a bar fails")
    args = p.parse_args(argv)
    inner = args.inner_steps or PRESET_SETTINGS[args.preset].recipe.inner_steps
    specs = miner_specs(args.honest, args.speeds, args.attackers, inner)
    workdir = args.out.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    flags = ["--out", str(workdir), "--rounds", str(args.rounds), "--preset", args.preset, "--wandb.off",
             "--round-blocks", str(args.round_blocks), "--train-blocks", str(args.train_blocks),
             "--cache-dir", args.cache_dir, "--tempo", str(args.tempo)]
    if args.inner_steps:
        flags += ["--inner-steps", str(args.inner_steps)]
    code = runner.main(flags, plans(specs, workdir))
    if code != 0:
        return code
    result = collect(specs, workdir, args, time.monotonic() - started)
    baseline = RunResult.from_json(json.loads(args.baseline.read_text())) if args.baseline else None
    found = write(result, workdir, baseline)
    print(markdown_table(result))
    print(bars_table(found))
    print(f"wrote {workdir / 'table.md'}, {workdir / 'strategies.png'}, {workdir / 'result.json'}")
    return 1 if args.check and not all(b.passed for b in found) else 0


if __name__ == "__main__":
    sys.exit(main())
