"""The lead serves its round records over HTTP; a follower waits for one whose digest is on chain."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from template.audit.round_record import RoundRecord
from template.validator.checkpoint_app import create_checkpoint_app
from template.net.server import BackgroundServer
from template.training.presets import PRESET_SETTINGS
from template.validator.records_board import Lead, RoundRecordBoard
from template.utils.ports import free_port

LEAD_HOTKEY = "5Lead"


def record(round_index: int) -> RoundRecord:
    return RoundRecord(netuid=1, round_index=round_index, start_block=10 * round_index, seed="00" * 32,
                       eval_block=10 * round_index + 7, base_checkpoint="aa" * 32, new_checkpoint="bb" * 32,
                       recipe=PRESET_SETTINGS["tiny"].recipe.with_overrides(outer_lr=1.0).model_dump(),
                       accepted=["5Miner"], contributions={"5Miner": "cc" * 32},
                       heldout_loss_after=6.25)


class Chain:
    """The lead's commitments as the chain would answer them (the SDK read is in the e2e tests)."""

    def __init__(self):
        self.commitments: dict[str, set[str]] = {}

    async def committed_digests(self, hotkey: str) -> set[str]:
        return set(self.commitments.get(hotkey, set()))


@pytest.fixture()
def lead(tmp_path):
    chain = Chain()
    board = RoundRecordBoard(chain.committed_digests, keep_rounds=2, poll_seconds=0.1)
    port = free_port()
    server = BackgroundServer(create_checkpoint_app(tmp_path, lambda: None, board.served), "127.0.0.1", port).start()
    yield board, chain, Lead(LEAD_HOTKEY, f"http://127.0.0.1:{port}", is_me=False)
    server.stop()


def test_follower_gets_the_record_once_its_digest_is_committed(lead):
    board, chain, endpoint = lead
    board.publish(record(3))
    follower = RoundRecordBoard(chain.committed_digests, poll_seconds=0.1)

    async def commit_later():
        await asyncio.sleep(0.5)
        chain.commitments[LEAD_HOTKEY] = {record(3).digest()}

    async def wait():
        return (await asyncio.gather(follower.wait_for(endpoint, 3, seconds=10.0), commit_later()))[0]

    published, problem = asyncio.run(wait())
    assert problem == "" and published.record == record(3)
    assert published.record.digest() in published.committed


def test_follower_gives_up_on_an_uncommitted_or_missing_record(lead):
    board, chain, endpoint = lead
    board.publish(record(3))
    follower = RoundRecordBoard(chain.committed_digests, poll_seconds=0.1)
    published, _ = asyncio.run(follower.wait_for(endpoint, 3, seconds=0.5))
    assert published.record == record(3) and published.committed == set()  # seen, never committed
    published, problem = asyncio.run(follower.wait_for(endpoint, 9, seconds=0.5))
    assert published is None and "no record of round 9" in problem


def test_lead_serves_recent_records_and_refuses_bad_round_ids(lead):
    board, _, endpoint = lead
    for r in (1, 2, 3):
        board.publish(record(r))
    assert httpx.get(f"{endpoint.url}/v1/rounds/3").text == record(3).canonical_json()
    assert httpx.get(f"{endpoint.url}/v1/rounds/1").status_code == 404  # only the last 2 kept
    assert httpx.get(f"{endpoint.url}/v1/rounds/-1").status_code == 400
    assert httpx.get(f"{endpoint.url}/v1/rounds/three").status_code == 422


def test_follower_reports_a_malformed_record(tmp_path):
    chain = Chain()
    port = free_port()
    server = BackgroundServer(create_checkpoint_app(tmp_path, lambda: None, lambda _: '{"netuid": "one"}'),
                              "127.0.0.1", port).start()
    try:
        follower = RoundRecordBoard(chain.committed_digests, poll_seconds=0.1)
        published, problem = asyncio.run(follower.wait_for(Lead(LEAD_HOTKEY, f"http://127.0.0.1:{port}", False), 2,
                                                           seconds=0.3))
    finally:
        server.stop()
    assert published is None and "unusable" in problem


def test_a_checkpoint_is_backed_only_by_the_leads_committed_record_naming_it(lead):
    board, chain, endpoint = lead
    board.publish(record(3))
    follower = RoundRecordBoard(chain.committed_digests, poll_seconds=0.1)
    backed, detail = asyncio.run(follower.backs_checkpoint(endpoint, 3, "bb" * 32, seconds=0.3))
    assert not backed and "not what it committed" in detail
    chain.commitments[LEAD_HOTKEY] = {record(3).digest()}
    assert asyncio.run(follower.backs_checkpoint(endpoint, 3, "bb" * 32, seconds=0.3)) == (
        True, "the result of the lead's committed round 3")
    backed, detail = asyncio.run(follower.backs_checkpoint(endpoint, 3, "ee" * 32, seconds=0.3))
    assert not backed and "not this checkpoint" in detail
    backed, detail = asyncio.run(follower.backs_checkpoint(endpoint, 7, "bb" * 32, seconds=0.3))
    assert not backed and "no committed record" in detail


def test_follower_stops_waiting_for_a_lead_that_refuses_connections():
    follower = RoundRecordBoard(Chain().committed_digests, poll_seconds=0.1, refused_polls_to_give_up=3)
    dead = Lead(LEAD_HOTKEY, f"http://127.0.0.1:{free_port()}", is_me=False)
    t0 = time.monotonic()
    published, problem = asyncio.run(follower.wait_for(dead, 3, seconds=30.0))
    assert published is None and "does not answer" in problem
    assert time.monotonic() - t0 < 10.0  # three refused polls, not the 30 s the round allowed
