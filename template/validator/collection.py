"""Collecting a round's contributions in two steps, so nobody can copy another's work while the
round is open:

1. until the deadline, every miner's signed commitment (the sha256 and size of its bytes),
   long-polled so their order is the true finishing order;
2. from the round's eval block on, when miners give the bytes out, each committed miner's bytes,
   which must be exactly what it committed to.

A commitment that comes after the deadline counts for nothing, so bytes copied after the reveal
are worthless. A dead or slow miner costs the round only its own share.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

from loguru import logger

from protocol.messages import ContributionCommitment, UnitOfWork
from template.validation.round import Received
from template.validator.miner_client import MinerEndpoint, Reply, ReplyStatus

LONG_POLL_SECONDS = 5.0
# A committed contribution must arrive at least this fast (after a fixed allowance for the
# connection): a miner that drips its bytes is cut off in proportion to what it promised, not
# at the round's end.
REVEAL_ALLOWANCE_SECONDS = 2.0
MIN_REVEAL_BYTES_PER_S = 1024 * 1024


def reveal_time_allowed(size_bytes: int) -> float:
    """Seconds one committed contribution of `size_bytes` may take to arrive."""
    return REVEAL_ALLOWANCE_SECONDS + size_bytes / MIN_REVEAL_BYTES_PER_S


@dataclass
class Commitments:
    """What came by the deadline: commitments in arrival order, and why the others did not."""

    arrived: dict[str, ContributionCommitment] = field(default_factory=dict)  # insertion = arrival order
    failures: dict[str, str] = field(default_factory=dict)

    def arrival_index(self, hotkey: str) -> int | None:
        return next((i for i, hk in enumerate(self.arrived) if hk == hotkey), None)

    def to_json(self) -> str:
        return json.dumps({"arrived": [[hk, c.model_dump(mode="json")] for hk, c in self.arrived.items()],
                           "failures": self.failures})

    @classmethod
    def from_json(cls, text: str) -> "Commitments":
        fields = json.loads(text)
        return cls({hk: ContributionCommitment.model_validate(c) for hk, c in fields["arrived"]},
                   {str(hk): str(why) for hk, why in fields["failures"].items()})


async def collect_commitments(client, netuid: int, round_index: int, miners: list[MinerEndpoint],
                              deadline_unix: float, chain_deadline: Awaitable | None = None) -> Commitments:
    """Long-poll every miner for its commitment until `deadline_unix` or, if sooner,
    `chain_deadline` (the chain reaching the deadline block) completes."""
    found = Commitments()
    last: dict[str, Reply] = {}

    async def poll(miner: MinerEndpoint) -> None:
        while (remaining := deadline_unix - time.time()) > 0:
            reply = await client.fetch_commitment(miner, netuid, round_index, wait=min(LONG_POLL_SECONDS, remaining))
            last[miner.hotkey] = reply
            if reply.status == ReplyStatus.OK and time.time() <= deadline_unix:
                found.arrived[miner.hotkey] = reply.commitment
                return
            if reply.http_status in (403, 410) or (reply.status == ReplyStatus.REFUSED and reply.http_status == 200):
                return  # refused for good, or a commitment that does not check out
            # pending, restarting, or the lead's order has not reached it yet: ask again
            await asyncio.sleep(1.0 if reply.status == ReplyStatus.UNREACHABLE else 0.05)

    polls = asyncio.ensure_future(asyncio.gather(*(poll(m) for m in miners)))
    closing = [asyncio.ensure_future(asyncio.sleep(max(0.0, deadline_unix - time.time())))]
    if chain_deadline is not None:
        closing.append(asyncio.ensure_future(chain_deadline))
    await asyncio.wait({polls, *closing}, return_when=asyncio.FIRST_COMPLETED)
    for task in (polls, *closing):
        task.cancel()
    await asyncio.gather(polls, *closing, return_exceptions=True)
    for miner in miners:
        if miner.hotkey not in found.arrived:
            reply = last.get(miner.hotkey)
            why = f"{reply.status} {reply.detail}".strip() if reply and reply.status != ReplyStatus.PENDING else ""
            found.failures[miner.hotkey] = f"late: no commitment by the deadline{f' ({why})' if why else ''}"
    return found


async def fetch_revealed(client, miners: list[MinerEndpoint], commitments: Commitments,
                         deadline_unix: float) -> dict[str, Reply]:
    """Each committed miner's bytes, asked for again while it says 425 (its view of the chain may
    trail this validator's), until `deadline_unix` or the time its committed size allows
    (`reveal_time_allowed`), whichever comes first."""
    by_hotkey = {m.hotkey: m for m in miners}

    async def fetch(hotkey: str) -> tuple[str, Reply]:
        commitment = commitments.arrived[hotkey]
        own_deadline = min(deadline_unix, time.time() + reveal_time_allowed(commitment.size_bytes))
        reply = Reply(ReplyStatus.UNREACHABLE, "no time left to fetch the committed bytes")
        while (remaining := own_deadline - time.time()) > 0:
            reply = await client.fetch_contribution(by_hotkey[hotkey], commitment, deadline_s=remaining)
            if reply.status == ReplyStatus.OK or not (reply.status == ReplyStatus.UNREACHABLE
                                                      or reply.http_status == 425):
                break
            await asyncio.sleep(0.25)
        return hotkey, reply

    return dict(await asyncio.gather(*(fetch(hk) for hk in commitments.arrived)))


def received_from(round_index: int, miners: list[MinerEndpoint], assignments: dict[str, list[int]],
                  units: dict[str, UnitOfWork], commitments: Commitments, revealed: dict[str, Reply]
                  ) -> list[Received]:
    """What each miner sent, in the form scoring takes; the commitment order is the arrival order."""
    received = []
    for miner in miners:
        reply = revealed.get(miner.hotkey)
        if reply is not None and reply.status == ReplyStatus.OK:
            body, failure = reply.body, None
        elif reply is not None:
            body, failure = None, f"withheld: committed but the bytes did not come ({reply.status} {reply.detail})"
        else:
            body, failure = None, commitments.failures.get(miner.hotkey, "late: no commitment by the deadline")
        if failure:
            logger.warning("round {}: uid {} sent nothing: {}", round_index, miner.uid, failure)
        arrival = commitments.arrival_index(miner.hotkey)
        received.append(Received(uid=miner.uid, hotkey=miner.hotkey, assigned=assignments[miner.hotkey], body=body,
                                 arrival_index=len(miners) + miner.uid if arrival is None else arrival,
                                 unit=units[miner.hotkey], failure=failure,
                                 committed=miner.hotkey in commitments.arrived))
    return received
