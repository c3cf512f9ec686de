"""The hostile campaign's miner (bench/hostile_miner.py) against the validator's real client: each
crafted payload arrives committed and signed, so the validator fetches it and its decoder has to
refuse it; the /v1/info floods and the dripped contribution are cut off by the client's limits.
In process, no chain: the whole campaign is `python -m bench.hostile_campaign`."""
from __future__ import annotations

import asyncio
import time

import pytest
from bittensor.sp_core import Keypair

from bench.hostile_miner import DECLARED_FLOOD, HostileMiner
from protocol.recipe import CompressionConfig
from template.validation.contribution import PAYLOAD, Expected, Rejected, open_contribution
from template.validator.miner_client import MinerClient, MinerEndpoint, ReplyStatus

MINER = Keypair.create_from_uri("//CampaignHostileMiner")
VALIDATOR = Keypair.create_from_uri("//CampaignValidator")
NETUID = 7


def client_calls(hostile: HostileMiner, calls):
    async def run():
        client = MinerClient(VALIDATOR, timeout=2.0)
        try:
            return await calls(client, MinerEndpoint(uid=5, hotkey=MINER.ss58_address, url=hostile.url))
        finally:
            await client.close()
    return asyncio.run(run())


def until(condition, patience: float = 10.0) -> None:
    give_up = time.monotonic() + patience
    while not condition() and time.monotonic() < give_up:
        time.sleep(0.05)


def test_every_crafted_payload_arrives_committed_and_the_decoder_refuses_it():
    hostile = HostileMiner(MINER, NETUID, "tiny", frozenset({1}))
    hostile.attacks = [a for a in hostile.attacks if a.payload]  # NaN values needs a real order and checkpoint

    async def fetch_all(client, miner):
        got = []
        for round_index in range(len(hostile.attacks)):
            reply = await client.fetch_commitment(miner, NETUID, round_index, wait=1.0)
            assert reply.status == ReplyStatus.OK, reply
            got.append(await client.fetch_contribution(miner, reply.commitment, deadline_s=10.0))
        return got

    hostile.start()
    try:
        replies = client_calls(hostile, fetch_all)
    finally:
        hostile.stop()
    assert len(replies) == len(hostile.attacks) >= 10
    classes = set()
    for round_index, (attack, reply) in enumerate(zip(hostile.attacks, replies)):
        assert reply.status == ReplyStatus.OK and reply.body == attack.payload, attack.name
        with pytest.raises(Rejected) as refused:
            open_contribution(reply.body, Expected(MINER.ss58_address, NETUID, round_index, "ab" * 32),
                              {"t": (4,)}, CompressionConfig())
        assert refused.value.kind == PAYLOAD, attack.name
        classes.add(attack.payload_class)
    assert {"bad header length", "deep nesting", "metadata type", "exotic dtype", "bad shape", "bad offsets",
            "bad name"} <= classes


def test_info_floods_are_cut_off_and_the_miner_is_known_once_it_answers():
    async def three_infos(client, miner):
        return [await client.info(miner) for _ in range(3)]

    hostile = HostileMiner(MINER, NETUID, "tiny", frozenset({5})).start()
    try:
        infos = client_calls(hostile, three_infos)
        until(lambda: len(hostile.info_events) == 2)
    finally:
        hostile.stop()
    assert infos[0] is None and infos[1] is None
    assert infos[2] is not None and infos[2].hotkey == MINER.ss58_address
    assert [e["caller_hung_up"] for e in hostile.info_events] == [True, True]
    assert all(e["sent_bytes"] < DECLARED_FLOOD // 10 for e in hostile.info_events), hostile.info_events


def test_a_dripped_contribution_is_given_up_at_the_clients_deadline():
    hostile = HostileMiner(MINER, NETUID, "tiny", frozenset({4}))
    hostile.attacks = [a for a in hostile.attacks if "body" in a.name]

    async def fetch(client, miner):
        reply = await client.fetch_commitment(miner, NETUID, 3, wait=1.0)
        return await client.fetch_contribution(miner, reply.commitment, deadline_s=1.0)

    hostile.start()
    try:
        reply = client_calls(hostile, fetch)
        until(lambda: any(e["endpoint"] == "/v1/contribution" for e in hostile.rounds[3].events))
    finally:
        hostile.stop()
    assert reply.status == ReplyStatus.UNREACHABLE and not reply.body
    event = next(e for e in hostile.rounds[3].events if e["endpoint"] == "/v1/contribution")
    assert event["caller_hung_up"] and event["sent_bytes"] < event["of_bytes"]
