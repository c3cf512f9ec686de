"""A miner spanning its host's devices: the inner loop under `torchrun --nproc_per_node 2` on CPU
(gloo), with DDP and with FSDP2 (`fully_shard`), computes the pseudo-gradient the one-process
inner loop computes on the same pages (to float rounding: the batch is split and the shares'
gradients summed in another order)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from protocol.messages import UnitOfWork
from protocol.recipe import Recipe
from template.miner.team_lead import TeamLead
from template.training.checkpoint import load_checkpoint, save_checkpoint
from template.training.inner_loop import pseudo_gradient, train_inner
from template.training.model import build_model, load_model_state, model_state
from template.training.pages import build_page_store
from template.training.presets import PRESET_SETTINGS
from template.training.team import TeamEnv
from tests.fixture_text import fixture_text

REPO = Path(__file__).resolve().parents[1]
VOCAB, PAGE_LEN = 300, 32
TOLERANCE = 1e-5  # max |difference| allowed between the team's and one process's pseudo-gradient


@pytest.mark.slow  # two torchrun processes start torch and transformers: ~40 s on the 2-core box
def test_a_torchrun_team_with_ddp_or_fsdp2_computes_the_one_process_pseudo_gradient(tmp_path):
    store = build_page_store(tmp_path / "cache", VOCAB, PAGE_LEN, text=fixture_text(1500))
    tokens = store.pages(store.train_ids[:48])
    base = model_state(build_model("tiny", VOCAB, seed=5, device="cpu"))
    save_checkpoint(tmp_path / "tokens.safetensors", {"tokens": tokens})
    save_checkpoint(tmp_path / "base.safetensors", base)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "bench.team", "--preset", "tiny", "--vocab", str(VOCAB), "--engine", "ddp,fsdp",
               "--steps", "6", "--batch", "8", "--device", "cpu", "--base", str(tmp_path / "base.safetensors"),
               "--tokens", str(tmp_path / "tokens.safetensors"), "--delta-out", str(tmp_path / "delta-ENGINE.st"),
               "--out", str(tmp_path / "team.json")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    runs = json.loads((tmp_path / "team.json").read_text())
    assert [(r["engine"], r["processes"], r["steps"]) for r in runs] == [("ddp", 2, 6), ("fsdp", 2, 6)]

    recipe = Recipe.model_validate(runs[0]["recipe"])
    model = build_model("tiny", VOCAB, seed=0, device="cpu")
    load_model_state(model, base)
    alone = train_inner(model, tokens[runs[0]["pages"]], recipe, seed=runs[0]["seed"])
    expected = pseudo_gradient(base, model)
    for run in runs:
        delta = load_checkpoint(tmp_path / f"delta-{run['engine']}.st")
        assert set(delta) == set(expected)
        worst = max(float((delta[n] - expected[n]).abs().max()) for n in expected)
        print(f"{run['engine']}: max |team - one process| = {worst:.2e} (largest |delta| "
              f"{max(float(t.abs().max()) for t in expected.values()):.2e})")
        assert worst <= TOLERANCE, (run["engine"], worst)
        assert abs(run["loss_first"] - alone.loss_first) < 1e-5 and abs(run["loss_last"] - alone.loss_last) < 1e-4


def test_only_torchrun_with_several_processes_makes_a_team(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert TeamEnv.from_environ() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert TeamEnv.from_environ() is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert TeamEnv.from_environ() == TeamEnv(rank=5, world=4, local_rank=1)


def test_a_team_refuses_shards_and_batches_it_cannot_share():
    team = SimpleNamespace(world=4)
    lead = TeamLead.__new__(TeamLead)
    lead.team = team
    recipe = PRESET_SETTINGS["tiny"].recipe
    order = SimpleNamespace(unit=UnitOfWork(), recipe=recipe)
    assert lead.refusal(order) is None
    assert "whole models only" in lead.refusal(SimpleNamespace(unit=UnitOfWork(kind="shard", scheme="width", count=2),
                                                               recipe=recipe))
    assert "a batch of 2 cannot be shared by 4" in lead.refusal(
        SimpleNamespace(unit=UnitOfWork(), recipe=recipe.with_overrides(batch_size=2)))
