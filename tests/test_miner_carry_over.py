"""A miner restarted at any moment keeps its AdamW moments, its error-feedback residuals and the
work orders it had accepted; a truncated file is refused with an error naming it."""
from __future__ import annotations

import time

import pytest
import torch
from bittensor.sp_core import Keypair

from protocol.messages import TrainRequest
from template.miner.carry_over import CarryOver
from template.miner.worker import MinerWorker
from template.training.inner_loop import train_inner
from template.training.model import build_model
from template.training.presets import PRESET_SETTINGS
from template.training.workload import Workload

RECIPE = PRESET_SETTINGS["tiny"].recipe.with_overrides(inner_steps=3, batch_size=4, pages_per_miner=8)
MINER = Keypair.create_from_uri("//CarryOverMiner")


def test_adamw_moments_survive_a_restart(tmp_path):
    model = build_model("tiny", 64, seed=0, device="cpu")
    tokens = torch.randint(0, 64, (8, 16))
    stats = train_inner(model, tokens, RECIPE, seed=1)
    CarryOver(tmp_path).save_moments(("full", stats.optimizer_state))

    label, restored = CarryOver(tmp_path).moments()  # a new process reads it back
    assert label == "full"
    original = stats.optimizer_state["state"]
    assert restored["state"].keys() == original.keys()
    for index, slots in original.items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(restored["state"][index][key], slots[key])
    again = train_inner(model, tokens, RECIPE, seed=2, optimizer_state=restored)  # and training continues
    assert float(again.optimizer_state["state"][0]["step"]) == 2 * RECIPE.inner_steps


def test_a_truncated_residual_is_set_aside_not_fatal(tmp_path, errors):
    carry = CarryOver(tmp_path)
    carry.save_residual("full", {"w": torch.ones(64, 64)})
    path = carry.residual_path("full")
    path.write_bytes(path.read_bytes()[:100])
    assert carry.residual("full") is None
    assert any(str(path) in line for line in errors)
    assert path.with_suffix(".corrupt").exists() and not path.exists()


def order(round_index: int, deadline_in: float) -> TrainRequest:
    return TrainRequest(netuid=1, round_index=round_index, round_block=60 * round_index, seed="00" * 32,
                        base_checkpoint="aa" * 32, dataset="ab" * 16, model_preset="tiny",
                        checkpoint_url="http://127.0.0.1:1/v1/checkpoint/x", pages=list(range(8)), recipe=RECIPE,
                        deadline_block=60 * round_index + 40, deadline_unix=time.time() + deadline_in)


def test_accepted_orders_are_resumed_after_a_restart(tmp_path):
    workload = Workload("tiny", 64, pages=None, recipe=RECIPE)
    before = MinerWorker(MINER, workload, "honest", tmp_path, None, torch.device("cpu"))
    assert before.submit(order(7, deadline_in=60.0), priority=5.0) == "accepted"
    assert before.submit(order(6, deadline_in=-1.0), priority=5.0) == "accepted"  # expires before the restart

    after = MinerWorker(MINER, workload, "honest", tmp_path, None, torch.device("cpu"))  # kill -9, start again
    after.resume_open_orders()
    queued = [after.jobs.get_nowait() for _ in range(after.jobs.qsize())]
    assert [o.round_index for o in queued] == [7]
    assert after.orders[7][0] == 5.0  # with the priority it came with
    assert [o.round_index for _, o in CarryOver(tmp_path).open_orders()] == [7]
