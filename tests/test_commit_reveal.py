"""Contributions cannot be copied while a round is open: before the round's eval block a miner
gives out only a signed commitment to its bytes, and a commitment that comes after the deadline
counts for nothing. Real HTTP between the validator's client and the miner's app on 127.0.0.1."""
from __future__ import annotations

import asyncio
import time

import pytest
import torch
from bittensor.sp_core import Keypair

from protocol.auth import RequestVerifier, sign_commitment
from protocol.messages import InfoResponse
from template.miner.app import create_miner_app
from template.miner.reveal import RevealClock
from template.miner.worker import MinerWorker
from template.net.server import BackgroundServer
from template.utils.ports import free_port
from template.validator.collection import collect_commitments, fetch_revealed, received_from, reveal_time_allowed
from template.validator.miner_client import MinerClient, MinerEndpoint, Reply

MINER = Keypair.create_from_uri("//CommitRevealMiner")
LEAD = Keypair.create_from_uri("//CommitRevealLead")
ATTACKER = Keypair.create_from_uri("//CommitRevealPermitHolder")  # holds a permit, is not the lead
NETUID, ROUND = 7, 20
ROUND_BLOCKS, TRAIN_BLOCKS = 10, 6  # round 20: blocks 200..209, deadline 206, bytes from 207
BODY = b"the miner's contribution bytes" * 100


@pytest.fixture
def miner(tmp_path):
    chain = {"block": 203}

    async def current_block() -> int:
        return chain["block"]

    worker = MinerWorker(MINER, workload=None, behaviour="honest", state_dir=tmp_path, copy_from_dir=None,
                         device=torch.device("cpu"))
    worker.outbox.put(ROUND, BODY, sign_commitment(MINER, NETUID, ROUND, BODY))  # finished before the deadline
    permitted = {LEAD.ss58_address, ATTACKER.ss58_address}
    verifier = RequestVerifier(MINER.ss58_address, lambda hk: None if hk in permitted else "no permit")
    info = InfoResponse(hotkey=MINER.ss58_address, version="3.0", device="cpu", capacity_gb=1.0, model_preset="tiny")

    async def any_assignment(order, sender):
        return None

    reveal = RevealClock(current_block, ROUND_BLOCKS, TRAIN_BLOCKS, refresh_seconds=0.0)
    port = free_port()
    server = BackgroundServer(create_miner_app(worker, verifier, NETUID, any_assignment, info, reveal),
                              "127.0.0.1", port).start()
    yield MinerEndpoint(1, MINER.ss58_address, f"http://127.0.0.1:{port}"), chain, worker
    server.stop()


def with_client(signer, call):
    async def run():
        client = MinerClient(signer, timeout=5.0)
        try:
            return await call(client)
        finally:
            await client.close()
    return asyncio.run(run())


def test_no_one_gets_the_bytes_before_the_rounds_eval_block(miner):
    endpoint, chain, _ = miner
    commitment = with_client(LEAD, lambda c: c.fetch_commitment(endpoint, NETUID, ROUND)).commitment
    assert commitment is not None and commitment.size_bytes == len(BODY)
    for block in (203, 206):  # training, and the deadline block itself
        chain["block"] = block
        for signer in (ATTACKER, LEAD):
            early = with_client(signer, lambda c: c.fetch_contribution(endpoint, commitment))
            assert early.status == "refused" and early.http_status == 425 and not early.body, early
            assert "block 207" in early.detail
    chain["block"] = 207
    revealed = with_client(LEAD, lambda c: c.fetch_contribution(endpoint, commitment))
    assert revealed.status == "ok" and revealed.body == BODY


def test_bytes_other_than_the_committed_ones_are_refused(miner):
    endpoint, chain, worker = miner
    commitment = with_client(LEAD, lambda c: c.fetch_commitment(endpoint, NETUID, ROUND)).commitment
    worker.outbox.path(ROUND).write_bytes(BODY.replace(b"miner", b"thief"))  # same size, other bytes
    chain["block"] = 207
    reply = with_client(LEAD, lambda c: c.fetch_contribution(endpoint, commitment))
    assert reply.status == "refused" and "not the ones the miner committed to" in reply.detail


def test_a_commitment_for_another_round_or_signed_by_another_key_is_refused(miner):
    endpoint, _, worker = miner
    worker.outbox.put(21, BODY, sign_commitment(MINER, NETUID, 20, BODY))  # round 20's, served as round 21's
    moved = with_client(LEAD, lambda c: c.fetch_commitment(endpoint, NETUID, 21))
    assert moved.status == "refused" and "round 20" in moved.detail
    worker.outbox.put(22, BODY, sign_commitment(ATTACKER, NETUID, 22, BODY))
    forged = with_client(LEAD, lambda c: c.fetch_commitment(endpoint, NETUID, 22))
    assert forged.status == "refused" and "signature" in forged.detail


class ScriptedMiners:
    """Commitments that arrive after `delay` seconds; bytes given out once `revealed` is set."""

    def __init__(self, delays: dict[str, float], keys: dict[str, Keypair]):
        self.delays, self.keys = delays, keys
        self.revealed = False
        self.early_asks = 0
        self.answered: list[str] = []

    async def fetch_commitment(self, miner, netuid, round_index, wait=0.0):
        await asyncio.sleep(self.delays[miner.hotkey])
        self.answered.append(miner.hotkey)
        return Reply("ok", commitment=sign_commitment(self.keys[miner.hotkey], netuid, round_index, BODY))

    async def fetch_contribution(self, miner, commitment, deadline_s=0.0):
        if not self.revealed:
            self.early_asks += 1
            return Reply("refused", "425 too early", http_status=425)
        return Reply("ok", body=BODY, commitment=commitment)


def test_a_commitment_after_the_deadline_counts_for_nothing():
    """The copier can only commit once it has the bytes, which is after the reveal: too late."""
    honest, copier = Keypair.create_from_uri("//Honest"), Keypair.create_from_uri("//Copier")
    miners = [MinerEndpoint(1, honest.ss58_address, "http://honest.invalid"),
              MinerEndpoint(2, copier.ss58_address, "http://copier.invalid")]
    client = ScriptedMiners({honest.ss58_address: 0.05, copier.ss58_address: 1.5},
                            {honest.ss58_address: honest, copier.ss58_address: copier})

    found = asyncio.run(collect_commitments(client, NETUID, ROUND, miners, time.time() + 0.6))
    assert list(found.arrived) == [honest.ss58_address]
    assert "late: no commitment by the deadline" in found.failures[copier.ss58_address]
    assert client.answered == [honest.ss58_address]  # the copier's pending poll was cut at the deadline
    received = received_from(ROUND, miners, {m.hotkey: [] for m in miners}, {m.hotkey: None for m in miners},
                             found, {honest.ss58_address: Reply("ok", body=BODY)})
    assert [r.body is not None for r in received] == [True, False]
    assert received[1].failure.startswith("late")
    assert [r.committed for r in received] == [True, False]  # only a commitment counts in the record
    withheld = received_from(ROUND, miners[:1], {miners[0].hotkey: []}, {miners[0].hotkey: None}, found,
                             {honest.ss58_address: Reply("unreachable", "connection reset")})
    assert withheld[0].failure.startswith("withheld") and withheld[0].committed


def test_the_chain_reaching_the_deadline_block_closes_commitments_early():
    slow = Keypair.create_from_uri("//Slow")
    miners = [MinerEndpoint(1, slow.ss58_address, "http://slow.invalid")]
    client = ScriptedMiners({slow.ss58_address: 1.0}, {slow.ss58_address: slow})

    async def run():
        return await collect_commitments(client, NETUID, ROUND, miners, time.time() + 30.0, asyncio.sleep(0.2))

    found = asyncio.run(run())
    assert not found.arrived and slow.ss58_address in found.failures


def test_the_bytes_are_asked_for_again_while_the_miner_says_too_early():
    miner_key = Keypair.create_from_uri("//Trailing")
    miners = [MinerEndpoint(1, miner_key.ss58_address, "http://trailing.invalid")]
    client = ScriptedMiners({miner_key.ss58_address: 0.0}, {miner_key.ss58_address: miner_key})

    async def run():
        found = await collect_commitments(client, NETUID, ROUND, miners, time.time() + 1.0)
        asyncio.get_running_loop().call_later(0.6, setattr, client, "revealed", True)
        return await fetch_revealed(client, miners, found, time.time() + 5.0)

    revealed = asyncio.run(run())
    assert revealed[miner_key.ss58_address].body == BODY and client.early_asks >= 2


def test_a_miner_that_drips_its_bytes_is_given_up_in_proportion_to_what_it_committed():
    """The round may have long left, but a committed contribution must arrive at the minimum rate:
    a dripping miner costs the validator `reveal_time_allowed(size)`, not the rest of the round."""
    dripper = Keypair.create_from_uri("//Dripper")
    miners = [MinerEndpoint(1, dripper.ss58_address, "http://dripper.invalid")]
    client = ScriptedMiners({dripper.ss58_address: 0.0}, {dripper.ss58_address: dripper})

    async def never_done(miner, commitment, deadline_s=0.0):  # as the client ends a drip: at its deadline
        await asyncio.sleep(deadline_s)
        return Reply("unreachable", "DeadlineExceeded")

    client.fetch_contribution = never_done

    async def run():
        found = await collect_commitments(client, NETUID, ROUND, miners, time.time() + 1.0)
        started = time.monotonic()
        revealed = await fetch_revealed(client, miners, found, time.time() + 60.0)
        return revealed, time.monotonic() - started

    revealed, seconds = asyncio.run(run())
    allowed = reveal_time_allowed(len(BODY))
    assert revealed[dripper.ss58_address].status == "unreachable"
    assert allowed - 0.1 <= seconds < allowed + 1.0, seconds
