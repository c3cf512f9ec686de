"""A whole round of the real `Validator`, lead and follower, in one process: real miners'
training and contribution bytes (`MinerWorker`), real scoring, aggregation and replay; the chain,
the miners' HTTP and the lead's record board replaced by in-process stand-ins with a fake clock.
No chain process, no sockets, no subprocesses."""
from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest
import torch
from bittensor.sp_core import Keypair

from protocol.messages import CheckpointInfo, InfoResponse, TrainRequest
from protocol.version import PROTOCOL_VERSION
from protocol.auth import matches_commitment, sign_commitment
from template.audit.lead_check import parse_record
from template.audit.replay import replay_from_state_dir
from template.audit.round_record import read_records
from template.chain.neuron_chain import MetagraphView, NeuronView
from template.config import parse_config
from template.miner.worker import MinerWorker
from template.net.checkpoint_client import CheckpointFetchError
from template.training.checkpoint import save_checkpoint
from template.training.outer_step import OUTER_STEP_FRACTIONS
from template.training.pages import build_page_store
from template.training.presets import PRESET_SETTINGS
from template.training.workload import Workload
from template.utils.wandb_run import WandbRun
from template.validator.lifecycle import Validator
from template.validator.miner_client import MinerEndpoint, Reply
from template.validator.records_board import PublishedRecord, RoundRecordBoard
from template.chain.round_clock import round_at
from tests.fixture_text import fixture_text

VOCAB, PAGE_LEN, NETUID = 300, 32, 7
SECTIONS = ["subtensor", "wallet", "axon", "logging", "wandb", "neuron", "data", "round", "recipe", "validator"]
LEAD, FOLLOWER = Keypair.create_from_uri("//RoundLead"), Keypair.create_from_uri("//RoundFollower")
MINERS = {"honest-a": Keypair.create_from_uri("//HonestA"), "honest-b": Keypair.create_from_uri("//HonestB"),
          "zero": Keypair.create_from_uri("//ZeroMiner")}


class FakeChain:
    """Blocks jump to whatever is waited for; commitments and weights are kept in memory and
    shared by every validator on this chain."""

    def __init__(self, hotkey: str, graph: MetagraphView, ledger: dict):
        self.hotkey, self.graph, self.ledger = hotkey, graph, ledger

    async def block(self) -> int:
        return self.ledger["block"]

    async def block_time(self) -> float:
        return 1.0

    async def wait_for_block(self, block: int) -> None:
        if block > self.ledger["block"]:
            await asyncio.sleep(0.2)  # blocks take a moment: the miners' in-process answers come first
        self.ledger["block"] = max(self.ledger["block"], block)

    async def block_hash(self, block: int) -> str:
        return "0x" + hashlib.sha256(f"fake-block-{block}".encode()).hexdigest()

    async def metagraph(self) -> MetagraphView:
        return self.graph

    async def commit_hash(self, digest: str, note: str = "") -> bool:
        self.ledger["commits"].setdefault(self.hotkey, set()).add(digest)
        return True

    async def committed_digests(self, hotkey: str) -> set[str]:
        return set(self.ledger["commits"].get(hotkey, set()))

    async def weights_rate_limit(self) -> int:
        return 0

    async def set_weights(self, weights: dict, version_key: int) -> bool:
        self.ledger["weights"].append((self.hotkey, dict(weights)))
        return True


class InProcessMiners:
    """The miners' side of the protocol without HTTP: each work order is trained by a real
    `MinerWorker`, and its signed bytes are what every validator fetches."""

    def __init__(self, workers: dict[str, MinerWorker], bodies: dict):
        self.workers, self.bodies = workers, bodies
        self.orders: list[TrainRequest] = []

    async def info(self, miner: MinerEndpoint) -> InfoResponse | None:
        if miner.hotkey not in {kp.ss58_address for kp in MINERS.values()}:
            return None  # another validator's axon: no /v1/info
        return InfoResponse(hotkey=miner.hotkey, version=PROTOCOL_VERSION, device="cpu", capacity_gb=64.0,
                            model_preset="tiny")

    async def send_work(self, miner: MinerEndpoint, order: TrainRequest) -> Reply:
        self.orders.append(order)
        worker = self.workers[miner.hotkey]
        assert worker.submit(order, priority=1.0) == "accepted"
        body, _ = await asyncio.to_thread(worker._contribution, order)
        self.bodies[(order.round_index, miner.hotkey)] = body
        return Reply("ok", "accepted")

    async def fetch_commitment(self, miner: MinerEndpoint, netuid: int, round_index: int, wait: float = 0.0
                               ) -> Reply:
        body = self.bodies.get((round_index, miner.hotkey))
        if body is None:  # the miner had no work order for this round
            return Reply("refused", "no work order for this round", http_status=410)
        keypair = next(kp for kp in MINERS.values() if kp.ss58_address == miner.hotkey)
        return Reply("ok", commitment=sign_commitment(keypair, netuid, round_index, body))

    async def fetch_contribution(self, miner: MinerEndpoint, commitment, deadline_s: float = 0.0) -> Reply:
        body = self.bodies[(commitment.round_index, miner.hotkey)]
        assert matches_commitment(body, commitment)
        return Reply("ok", body=body, commitment=commitment)


class BoardOfLead(RoundRecordBoard):
    """A follower's view of the lead's records: what the lead serves, with the lead's on-chain
    commitments (no HTTP)."""

    def __init__(self, lead_board: RoundRecordBoard, chain: FakeChain):
        super().__init__(chain.committed_digests)
        self.lead_board = lead_board

    async def wait_for(self, lead, round_index: int, seconds: float):
        served = self.lead_board.served(round_index)
        if served is None:
            return None, "the lead served no record"
        return PublishedRecord(parse_record(json.loads(served)), await self.committed_digests(lead.hotkey)), ""


@pytest.fixture(scope="module")
def workload(tmp_path_factory) -> Workload:
    pages = build_page_store(tmp_path_factory.mktemp("cache"), VOCAB, PAGE_LEN, text=fixture_text(3000))
    recipe = PRESET_SETTINGS["tiny"].recipe.with_overrides(inner_steps=20, pages_per_miner=48)
    return Workload("tiny", VOCAB, pages, recipe)


def graph() -> MetagraphView:
    validators = [NeuronView(0, LEAD.ss58_address, "5ColdLead", 10**12, True, "127.0.0.1:1", 0, 0, 0, 0),
                  NeuronView(1, FOLLOWER.ss58_address, "5ColdFollower", 10**11, True, "127.0.0.1:2", 0, 0, 0, 0)]
    miners = [NeuronView(2 + i, kp.ss58_address, f"5Cold{name}", 0, False, f"127.0.0.1:{10 + i}", 0, 0, 0, 0)
              for i, (name, kp) in enumerate(MINERS.items())]
    return MetagraphView(NETUID, 0, validators + miners)


def make_validator(tmp: Path, keypair: Keypair, workload: Workload, ledger: dict, miners: InProcessMiners,
                   lead: str, **kw) -> Validator:
    config = parse_config(["--netuid", str(NETUID), "--subtensor.network", "sim", "--neuron.state_dir", str(tmp),
                           "--validator.lead", lead, "--neuron.device", "cpu"], SECTIONS, "test")
    chain = FakeChain(keypair.ss58_address, graph(), ledger)
    validator = Validator(config, chain, workload, tmp, WandbRun(), miners=miners, **kw)
    validator.base_url = f"http://{keypair.ss58_address[:8]}.invalid"
    return validator


def miner_workers(tmp: Path, workload: Workload, base_state: dict[str, torch.Tensor], digest: str
                  ) -> dict[str, MinerWorker]:
    workers = {}
    for name, kp in MINERS.items():
        state_dir = tmp / f"miner-{name}"
        worker = MinerWorker(kp, workload, "zero" if name == "zero" else "honest", state_dir, None,
                             torch.device("cpu"))
        save_checkpoint(worker.checkpoints.directory / f"{digest}.safetensors", base_state)  # as if fetched
        workers[kp.ss58_address] = worker
    return workers


def test_lead_and_follower_settle_the_same_round(tmp_path, workload):
    ledger = {"block": 0, "commits": {}, "weights": []}
    bodies: dict = {}
    lead = make_validator(tmp_path / "lead", LEAD, workload, ledger, InProcessMiners({}, bodies), lead="self")
    lead.ensure_checkpoint()
    base = lead.state.checkpoint
    lead.miners.workers = miner_workers(tmp_path, workload, lead.checkpoints.load(base), base)

    async def lead_announces_base(url: str, round_index: int, needed):
        info = CheckpointInfo(round_index=-1, sha256=base, size_bytes=1, model_preset="tiny", vocab_size=VOCAB)
        assert not needed(info)  # the follower holds it: nothing to download
        return info, None

    follower = make_validator(tmp_path / "follower", FOLLOWER, workload, ledger, InProcessMiners({}, bodies),
                              lead=LEAD.ss58_address, lead_records=BoardOfLead(lead.lead_records, FakeChain(
                                  LEAD.ss58_address, graph(), ledger)), fetch_checkpoint=lead_announces_base)
    follower.ensure_checkpoint()
    assert follower.state.checkpoint == base  # both start from the subnet's initial weights

    window = round_at(60, round_blocks=60, train_blocks=40)
    lead_settlement = asyncio.run(lead.run_round(window))

    # The lead: its work orders carried the whole recipe; the zero miner is refused; the honest merged.
    orders = lead.miners.orders
    assert len(orders) == 3 and all(o.recipe == workload.recipe for o in orders)
    zero = MINERS["zero"].ss58_address
    assert lead_settlement.skipped is None and lead_settlement.lead_check is None
    assert zero not in lead_settlement.accepted
    assert lead_settlement.accepted, "at least one honest update is merged"
    assert set(lead_settlement.accepted) <= {MINERS["honest-a"].ss58_address, MINERS["honest-b"].ss58_address}
    assert lead_settlement.new_checkpoint != base and lead.state.checkpoint == lead_settlement.new_checkpoint
    assert lead.state.checkpoint_round == window.index and lead.state.last_round == window.index
    record = read_records(tmp_path / "lead" / "rounds.jsonl")[-1]
    assert record.base_checkpoint == base and record.new_checkpoint == lead.state.checkpoint
    assert record.accepted == lead_settlement.accepted
    # The recipe merged with is the orders' own but for the outer step, a fraction the lead measured.
    outer_lr = workload.recipe.outer_lr
    assert record.training_recipe.model_copy(update={"outer_lr": outer_lr}) == workload.recipe
    assert record.training_recipe.outer_lr in {outer_lr * f for f in OUTER_STEP_FRACTIONS}
    assert record.scores[zero] == 0.0
    assert record.digest() in ledger["commits"][LEAD.ss58_address]  # committed on chain
    assert lead.state.heldout_history[-1]["heldout_loss"] < lead.state.heldout_history[0]["heldout_loss"]
    _, replayed = replay_from_state_dir(tmp_path / "lead", window.index, "tiny", VOCAB)
    assert replayed == record.new_checkpoint  # the archive and the record replay bit for bit

    # The follower: scores the same bytes, replays the lead's committed record, adopts the result.
    ledger["block"] = window.start_block  # the follower's round runs beside the lead's, on the same clock
    follower_settlement = asyncio.run(follower.run_round(window))
    assert follower_settlement.lead_check is not None and follower_settlement.lead_check.verified
    assert follower_settlement.accepted == lead_settlement.accepted
    assert follower.state.checkpoint == lead.state.checkpoint and follower.state.checkpoint_round == window.index
    assert torch.equal(next(iter(follower.model.state_dict().values())), next(iter(lead.model.state_dict().values())))
    follower_record = read_records(tmp_path / "follower" / "rounds.jsonl")[-1]
    assert follower_record.new_checkpoint == record.new_checkpoint and follower_record.accepted == record.accepted
    assert follower_record.scores == record.scores  # same bytes, same eval block: same scores
    assert FOLLOWER.ss58_address not in ledger["commits"]  # only the lead commits
    assert {hk for hk, _ in ledger["weights"]} == {LEAD.ss58_address, FOLLOWER.ss58_address}


def test_follower_skips_a_round_whose_base_it_cannot_get(tmp_path, workload):
    ledger = {"block": 0, "commits": {}, "weights": []}

    async def unreachable(url: str, round_index: int, needed):
        raise CheckpointFetchError("connection refused")

    follower = make_validator(tmp_path, FOLLOWER, workload, ledger, InProcessMiners({}, {}), lead=LEAD.ss58_address,
                              fetch_checkpoint=unreachable)
    follower.ensure_checkpoint()
    before = follower.state.checkpoint
    settlement = asyncio.run(follower.run_round(round_at(60, 60, 40)))
    assert settlement.skipped and "unavailable" in settlement.skipped
    assert follower.state.checkpoint == before and follower.state.last_round == -1
    assert not (tmp_path / "rounds.jsonl").exists()


def test_rounds_missed_while_the_validator_was_held_up_are_logged(tmp_path, workload):
    """Round 0 was the last one taken; the loop looks for the next at block 150 (rounds are 60
    blocks): rounds 1 and 2 are gone, and one line says so."""
    from loguru import logger

    ledger = {"block": 150, "commits": {}, "weights": []}
    validator = make_validator(tmp_path, LEAD, workload, ledger, InProcessMiners({}, {}), lead="self")
    validator.rounds_started = 1
    warnings: list[str] = []
    handle = logger.add(warnings.append, level="WARNING", format="{message}")
    try:
        window = asyncio.run(validator.next_window(attempted=0))
    finally:
        logger.remove(handle)
    assert window.index == 3
    assert any("round(s) 1, 2 skipped" in line and "busy past their start" in line for line in warnings), warnings


@pytest.mark.parametrize("late_by, taken", [(5, True), (40, False)])
def test_a_late_round_is_taken_only_while_miners_keep_most_of_their_training_time(tmp_path, workload, late_by,
                                                                                  taken):
    """The loop looks for the round after round 0 `late_by` blocks into round 1: it still takes
    round 1 when at most a quarter of its training window is gone, else round 2."""
    ledger = {"block": 60 + late_by, "commits": {}, "weights": []}
    validator = make_validator(tmp_path, LEAD, workload, ledger, InProcessMiners({}, {}), lead="self")
    validator.rounds_started = 1
    assert late_by > validator.rounds.train_blocks // 4 or taken  # the two cases straddle the slack
    window = asyncio.run(validator.next_window(attempted=0))
    assert (window.index == 1) is taken, window


def test_a_restarted_lead_picks_up_the_round_it_had_opened(tmp_path, workload):
    """Killed after sending its work orders: restarted past the join slack but before the
    deadline, it resumes that round with the same plan (the same orders, so the miners keep their
    work) instead of losing it."""
    ledger = {"block": 60, "commits": {}, "weights": []}
    bodies: dict = {}
    first = make_validator(tmp_path, LEAD, workload, ledger, InProcessMiners({}, bodies), lead="self")
    first.ensure_checkpoint()
    base = first.state.checkpoint
    workers = miner_workers(tmp_path, workload, first.checkpoints.load(base), base)
    first.miners.workers = workers
    window = round_at(60, round_blocks=60, train_blocks=40)

    async def open_the_round_then_die():
        plan = await first.plan_round(window)
        first.state.open_round = plan.to_json()
        first.state.save(first.state_path)  # what run_round saves before any order goes out
        await first.send_work(plan)
        return plan

    opened = asyncio.run(open_the_round_then_die())
    ledger["block"] = window.start_block + 25  # past the join slack (10 blocks), before the deadline (40)
    restarted = make_validator(tmp_path, LEAD, workload, ledger, InProcessMiners(workers, bodies), lead="self")
    restarted.rounds.max_rounds = 1
    resent = restarted.miners.orders

    async def resend(miner, order):  # the miners already hold these orders: identical ones are kept
        resent.append(order)
        return Reply("ok", workers[miner.hotkey].submit(order, priority=1.0))

    restarted.miners.send_work = resend
    asyncio.run(restarted.run_forever(asyncio.Event()))
    assert resent and all(o.round_index == window.index and o.deadline_unix == opened.deadline_unix for o in resent)
    assert len(resent) == len(opened.miners)
    records = read_records(tmp_path / "rounds.jsonl")
    assert [r.round_index for r in records] == [window.index], records
    assert records[0].accepted and restarted.state.open_round == ""
