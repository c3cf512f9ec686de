"""Nobody but the round's lead decides a miner's work: orders for a round that is not open on the
chain are refused, a permit holder with less stake cannot displace the lead's order, and no order
can send the miner to fetch from any server but the sender's own published address."""
from __future__ import annotations

import time

import pytest
import torch
from bittensor.sp_core import Keypair

from protocol.messages import TrainRequest
from template.chain.round_clock import SEED_LEAD_BLOCKS
from template.miner.work_order import check_checkpoint_source, check_round_is_open
from template.miner.worker import MinerWorker
from template.training.presets import PRESET_SETTINGS
from template.training.workload import Workload

ROUND_BLOCKS, TRAIN_BLOCKS = 60, 40
MINER = Keypair.create_from_uri("//WorkOrderMiner")


def order(round_index: int = 3, base: str = "aa", deadline_in: float = 30.0, **changes) -> TrainRequest:
    start = round_index * ROUND_BLOCKS
    fields = dict(netuid=1, round_index=round_index, round_block=start, seed="00" * 32, base_checkpoint=base * 32,
                  dataset="ab" * 16, model_preset="tiny", checkpoint_url="http://127.0.0.1:1/v1/checkpoint/x",
                  pages=list(range(48)), recipe=PRESET_SETTINGS["tiny"].recipe,
                  deadline_block=start + TRAIN_BLOCKS, deadline_unix=time.time() + deadline_in)
    fields.update(changes)
    return TrainRequest(**fields)


def test_an_order_for_the_open_round_passes():
    assert check_round_is_open(order(), current_block=185, round_blocks=ROUND_BLOCKS, train_blocks=TRAIN_BLOCKS,
                               now=time.time()) is None


@pytest.mark.parametrize("block", [180 - SEED_LEAD_BLOCKS, 179])
def test_an_order_is_taken_from_the_rounds_seed_block_just_before_it_starts(block):
    """Round 3 starts at block 180; its seed is the hash of the block SEED_LEAD_BLOCKS before:
    its orders may come from there, so a miner finishing round 2 goes straight on to round 3."""
    assert check_round_is_open(order(), block, ROUND_BLOCKS, TRAIN_BLOCKS, time.time()) is None


@pytest.mark.parametrize("block", [180 - SEED_LEAD_BLOCKS - 1, 220, 221, 5000])
def test_an_order_for_a_round_that_is_not_open_is_refused(block):
    problem = check_round_is_open(order(), block, ROUND_BLOCKS, TRAIN_BLOCKS, time.time())
    assert problem is not None and "not open" in problem


@pytest.mark.parametrize("changes", [{"round_index": 4}, {"round_block": 181}, {"deadline_block": 230}])
def test_an_order_off_the_subnets_schedule_is_refused(changes):
    problem = check_round_is_open(order().model_copy(update=changes), 185, ROUND_BLOCKS, TRAIN_BLOCKS, time.time())
    assert problem is not None and "schedule" in problem


def test_an_order_whose_deadline_has_passed_is_refused():
    problem = check_round_is_open(order(deadline_in=-1.0), 185, ROUND_BLOCKS, TRAIN_BLOCKS, time.time())
    assert problem == "the order's deadline has passed"


@pytest.fixture()
def worker(tmp_path) -> MinerWorker:
    workload = Workload("tiny", 300, pages=None, recipe=PRESET_SETTINGS["tiny"].recipe)
    return MinerWorker(MINER, workload, "honest", tmp_path, None, torch.device("cpu"))


def test_a_lesser_permit_holders_early_order_does_not_displace_the_leads(worker):
    forged, real = order(base="bb"), order(base="aa")
    assert worker.submit(forged, priority=1e9) == "accepted"  # arrives first, from a 1 TAO permit holder
    assert worker.submit(real, priority=5e11) == "accepted"  # the lead's: more stake, it replaces the forged one
    assert worker.is_current(real) and not worker.is_current(forged)
    assert worker.submit(order(base="cc"), priority=1e9) == "already_training"  # the lead's order stays
    assert worker.is_current(real)


def test_the_leads_order_is_not_replaced_by_an_equal_or_lower_one(worker):
    real = order(base="aa")
    assert worker.submit(real, priority=5e11) == "accepted"
    assert worker.submit(real, priority=5e11) == "already_training"  # the same order again
    assert worker.submit(order(base="dd"), priority=5e11) == "already_training"
    assert worker.is_current(real)


def test_a_replaced_order_is_dropped_from_the_queue(worker):
    forged, real = order(base="bb"), order(base="aa")
    worker.submit(forged, priority=1.0)
    worker.submit(real, priority=2.0)
    queued = [worker.jobs.get_nowait() for _ in range(worker.jobs.qsize())]
    assert [worker.is_current(job) for job in queued] == [False, True]


SENDER_AXON = "10.1.2.3:8092"


def test_a_checkpoint_at_the_senders_published_address_passes():
    base = "cd" * 32
    assert check_checkpoint_source(order(base="cd", checkpoint_url=f"http://{SENDER_AXON}/v1/checkpoint/{base}"),
                                   SENDER_AXON) is None


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:22/v1/checkpoint/" + "cd" * 32,  # loopback services on the miner's machine
    "http://169.254.169.254/latest/meta-data/",  # a cloud metadata endpoint
    "http://10.1.2.3:8093/v1/checkpoint/" + "cd" * 32,  # the sender's host, another port
    "http://10.1.2.3:8092/admin",  # the sender's address, another path
    "http://10.1.2.3:8092/v1/checkpoint/" + "ef" * 32,  # another checkpoint than the order's base
    "https://10.1.2.3:8092/v1/checkpoint/" + "cd" * 32,
    "http://10.1.2.3:8092@127.0.0.1:8080/v1/checkpoint/" + "cd" * 32,  # userinfo trick
])
def test_an_order_pointing_anywhere_else_is_refused(url):
    problem = check_checkpoint_source(order(base="cd", checkpoint_url=url), SENDER_AXON)
    assert problem and "sender's own published address" in problem


def test_a_sender_without_a_published_address_cannot_order_a_fetch():
    problem = check_checkpoint_source(order(base="cd", checkpoint_url="http://10.1.2.3:8092/v1/checkpoint/x"), None)
    assert problem and "no address on the chain" in problem
