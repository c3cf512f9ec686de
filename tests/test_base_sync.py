"""A miner reaches a round's base by replaying the lead's record of the round before onto the
checkpoint it holds: it fetches the record and the merged contributions (a small fraction of the
model's bytes) over real HTTP from the lead's checkpoint app, and the result hashes to the base
the order names. Without the earlier checkpoint, or when what the lead serves does not replay to
the base, it downloads the base whole, and still verifies it."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import torch

from protocol.messages import CheckpointInfo, TrainRequest, UnitOfWork
from template.audit.replay import archive_dir, replayed_state
from template.audit.round_record import RoundRecord
from template.miner.base_sync import BaseSync
from template.miner.checkpoint_cache import CheckpointCache
from template.net.server import BackgroundServer
from template.training.checkpoint import save_checkpoint, state_hash
from template.utils.ports import free_port
from template.validator.checkpoint_app import create_checkpoint_app
from tests.test_replay import lead_round, scored_round  # noqa: F401 (fixtures)
from tests.test_units_of_work import VOCAB, base_state, workload  # noqa: F401 (fixtures)


class Lead:
    """A lead's public API over HTTP: its checkpoints, its record of round 4 and that round's
    merged contributions, as `run_validator` serves them."""

    def __init__(self, state_dir: Path, record: RoundRecord, bodies: dict[str, bytes], states: list[dict]):
        self.state_dir = state_dir
        for state in states:
            save_checkpoint(state_dir / "checkpoints" / f"{state_hash(state)}.safetensors", state)
        folder = archive_dir(state_dir, record.round_index)
        folder.mkdir(parents=True)
        for hotkey in record.accepted:
            (folder / f"{hotkey}.safetensors").write_bytes(bodies[hotkey])
        self.record = record
        self.records = {record.round_index: record}
        app = create_checkpoint_app(state_dir / "checkpoints", lambda: None,
                                    lambda r: self.records[r].canonical_json() if r in self.records else None,
                                    lambda r: None, lambda r: archive_dir(state_dir, r))
        self.port = free_port()
        self.server = BackgroundServer(app, "127.0.0.1", self.port).start()
        self.url = f"http://127.0.0.1:{self.port}"

    def order(self, base: str, base_round: int) -> TrainRequest:
        return TrainRequest(netuid=1, round_index=5, round_block=50, seed="00" * 32, base_checkpoint=base,
                            dataset="ab" * 8, model_preset="tiny", checkpoint_url=f"{self.url}/v1/checkpoint/{base}",
                            base_round=base_round, unit=UnitOfWork(), pages=[1], recipe=self.record.training_recipe,
                            deadline_block=80, deadline_unix=time.time() + 60)


@pytest.fixture()
def lead(tmp_path, lead_round, base_state):  # noqa: F811
    record, bodies = lead_round
    new_state = replayed_state(record, base_state, bodies, "tiny", VOCAB)
    served = Lead(tmp_path / "lead", record, bodies, [base_state, new_state])
    yield served, new_state
    served.server.stop()


def test_a_miner_holding_the_previous_base_replays_the_next_one_for_a_fraction_of_its_bytes(
        tmp_path, lead, workload, base_state):  # noqa: F811
    served, new_state = lead
    cache = CheckpointCache(tmp_path / "miner")
    cache.put(served.record.base_checkpoint, base_state)  # it trained from it last round
    sync = BaseSync(cache, workload)
    synced = sync.base_for(served.order(served.record.new_checkpoint, 4), timeout=30)
    assert synced.how == "replayed" and state_hash(synced.state) == served.record.new_checkpoint
    checkpoint_bytes = (served.state_dir / "checkpoints" / f"{served.record.new_checkpoint}.safetensors").stat().st_size
    merged_bytes = sum((archive_dir(served.state_dir, 4) / f"{hk}.safetensors").stat().st_size
                       for hk in served.record.accepted)
    # Exactly the record and the merged contributions (this fixture's are top-512/4096, 5 of them).
    assert synced.bytes_fetched == len(served.record.canonical_json()) + merged_bytes < checkpoint_bytes
    assert cache.held(served.record.new_checkpoint) is not None  # kept for the next round's replay
    # The next order on the same base (the lead's head has not moved): held, and the last merge
    # is still known for the eager start; after a restart the base is held without it.
    again = sync.base_for(served.order(served.record.new_checkpoint, 4), timeout=30)
    assert again.how == "held" and again.bytes_fetched == 0
    assert again.merged == len(served.record.accepted) and state_hash(again.previous) == served.record.base_checkpoint
    restarted = BaseSync(cache, workload).base_for(served.order(served.record.new_checkpoint, 4), timeout=30)
    assert restarted.how == "held" and restarted.previous is None and restarted.merged == 0


def test_a_miner_two_rounds_behind_replays_both_rounds(tmp_path, lead, workload, base_state):  # noqa: F811
    """Round 5 merged nothing (too few accepted: the model stayed as round 4 left it); round 6
    was skipped; round 7's base is round 8's work order's: a miner holding only round 4's base
    replays round 4's record, then round 7's."""
    served, new_state = lead
    after_4 = served.record.new_checkpoint
    served.records[5] = dataclasses.replace(served.record, round_index=5, base_checkpoint=after_4, accepted=[],
                                            applied_to=after_4, new_checkpoint=after_4)
    served.records[7] = dataclasses.replace(served.records[5], round_index=7)
    cache = CheckpointCache(tmp_path / "miner")
    cache.put(served.record.base_checkpoint, base_state)
    synced = BaseSync(cache, workload).base_for(served.order(after_4, 7), timeout=30)
    assert synced.how == "replayed" and state_hash(synced.state) == after_4
    assert synced.merged == 0  # the last merge (round 7's) moved nothing


def test_a_miner_without_the_previous_base_downloads_the_next_one_whole(tmp_path, lead, workload):  # noqa: F811
    served, _ = lead
    synced = BaseSync(CheckpointCache(tmp_path / "joiner"), workload).base_for(
        served.order(served.record.new_checkpoint, 4), timeout=30)
    assert synced.how == "downloaded" and state_hash(synced.state) == served.record.new_checkpoint
    assert synced.bytes_fetched == (served.state_dir / "checkpoints" /
                                    f"{served.record.new_checkpoint}.safetensors").stat().st_size


def test_a_record_that_does_not_replay_to_the_orders_base_is_not_trusted(tmp_path, lead, workload,
                                                                         base_state):  # noqa: F811
    """The lead serves a merged contribution other than the one its record names: the replay is
    refused and the base downloaded whole instead (verified by its hash)."""
    served, _ = lead
    victim = served.record.accepted[0]
    path = archive_dir(served.state_dir, 4) / f"{victim}.safetensors"
    body = path.read_bytes()
    path.write_bytes(body[:-1] + bytes([body[-1] ^ 1]))
    cache = CheckpointCache(tmp_path / "miner")
    cache.put(served.record.base_checkpoint, base_state)
    synced = BaseSync(cache, workload).base_for(served.order(served.record.new_checkpoint, 4), timeout=30)
    assert synced.how == "downloaded" and state_hash(synced.state) == served.record.new_checkpoint


def test_an_order_whose_base_is_not_what_the_record_produces_is_downloaded_and_verified(
        tmp_path, lead, workload, base_state):  # noqa: F811
    served, _ = lead
    cache = CheckpointCache(tmp_path / "miner")
    cache.put(served.record.base_checkpoint, base_state)
    other = {k: v + 1 for k, v in base_state.items()}  # not served: no way to get it
    with pytest.raises(Exception, match="could not be fetched"):
        BaseSync(cache, workload).base_for(served.order(state_hash(other), 4), timeout=10)


def test_the_eager_start_stands_in_for_the_merge_still_in_flight(tmp_path, workload, base_state):  # noqa: F811
    """Round 6's base includes rounds up to 4; this miner's round-5 update is not merged yet: it
    starts from the base moved by its own update for its 1/n share and by the last merge (round
    4's, known from the replay) for the rest. Once round 5 is in the base, it starts from the
    base itself."""
    from template.miner.base_sync import SyncedBase
    from template.miner.worker import MinerWorker
    from template.training.compression import DecodedUpdate, compress, shapes_of
    from tests.test_hostile_http import MINER

    worker = MinerWorker(MINER, workload, "honest", tmp_path, None, torch.device("cpu"))
    own_delta = {k: torch.randn_like(v) * 1e-3 for k, v in base_state.items()}
    update, _ = compress(own_delta, None, workload.recipe.compression)
    worker._sent = {5: (update, shapes_of(own_delta))}
    previous = {k: v + 2e-3 for k, v in base_state.items()}  # round 4's merge moved the model by -2e-3
    synced = SyncedBase(base_state, "replayed", 1, previous=previous, merged=3)
    order = _order(base_state, 4)
    recipe = order.recipe
    start = worker.eager_start(order, synced)
    own = DecodedUpdate(update, shapes_of(own_delta))
    name = next(iter(base_state))
    expected = base_state[name] - recipe.outer_lr * (own[name] / 3 + 2e-3 / recipe.outer_lr * 2 / 3)
    assert torch.allclose(start[name], expected, atol=1e-7)
    merged_already = order.model_copy(update={"base_round": 5})
    assert worker.eager_start(merged_already, synced) is base_state
    held = SyncedBase(base_state, "held", 0)  # the last merge is not known here: no stand-in
    assert worker.eager_start(order, held) is base_state

    # The lead is a round behind: round 6's base includes rounds up to 3, so the merges of rounds
    # 4 and 5 are in flight; each has a stand-in (this miner's update of that round for 1/n).
    earlier_delta = {k: torch.randn_like(v) * 1e-3 for k, v in base_state.items()}
    earlier, _ = compress(earlier_delta, None, workload.recipe.compression)
    worker._sent = {4: (earlier, shapes_of(earlier_delta)), 5: (update, shapes_of(own_delta))}
    start = worker.eager_start(_order(base_state, 3), synced)
    own_4 = DecodedUpdate(earlier, shapes_of(earlier_delta))
    expected = base_state[name] - recipe.outer_lr * ((own_4[name] + own[name]) / 3
                                                     + 2e-3 / recipe.outer_lr * (2 - 2 / 3))
    assert torch.allclose(start[name], expected, atol=1e-7)


def _order(base_state, base_round: int) -> TrainRequest:
    from template.training.presets import PRESET_SETTINGS

    digest = state_hash(base_state)
    return TrainRequest(netuid=1, round_index=6, round_block=60, seed="00" * 32, base_checkpoint=digest,
                        dataset="ab" * 8, model_preset="tiny", checkpoint_url=f"http://x.invalid/v1/checkpoint/{digest}",
                        base_round=base_round, unit=UnitOfWork(), pages=[1],
                        recipe=PRESET_SETTINGS["tiny"].recipe, deadline_block=90, deadline_unix=time.time() + 60)
