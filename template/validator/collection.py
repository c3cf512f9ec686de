"""Collecting a round's contributions: long-poll every miner until it answers or the deadline
passes, in arrival order (a dead or slow miner costs the round only its own share)."""
from __future__ import annotations

import asyncio
import time

from loguru import logger

from protocol.messages import UnitOfWork
from template.validation.round import Received
from template.validator.miner_client import MinerEndpoint, Reply

GRACE_SECONDS = 2.0  # past the deadline, for the transfer of a contribution finished in time


async def collect(miners_client, round_index: int, miners: list[MinerEndpoint], assignments: dict[str, list[int]],
                  units: dict[str, UnitOfWork], deadline_unix: float) -> list[Received]:
    """Every miner's contribution (or why none came); the arrival order decides which of two
    near-identical updates is the earlier."""
    arrivals: list[str] = []
    results: dict[str, Reply] = {}

    async def poll(miner: MinerEndpoint) -> None:
        while True:
            remaining = deadline_unix + GRACE_SECONDS - time.time()
            if remaining <= 0:
                results[miner.hotkey] = Reply("late", "no contribution by the deadline")
                return
            reply = await miners_client.fetch_contribution(miner, round_index, wait=min(5.0, remaining))
            results[miner.hotkey] = reply
            if reply.status == "ok":
                arrivals.append(miner.hotkey)
                return
            if reply.status == "unreachable" or reply.http_status == 404:
                # restarting, or the lead's work order has not reached it yet: retry until the deadline
                await asyncio.sleep(1.0 if reply.status == "unreachable" else 0.5)
                continue
            if reply.http_status in (403, 410):
                return
            await asyncio.sleep(0.05)

    await asyncio.gather(*(poll(m) for m in miners))
    order = {hk: i for i, hk in enumerate(arrivals)}
    received = []
    for miner in miners:
        reply = results.get(miner.hotkey, Reply("late"))
        if reply.status != "ok":
            logger.warning("round {}: uid {} sent nothing: {} {}", round_index, miner.uid, reply.status, reply.detail)
        received.append(Received(uid=miner.uid, hotkey=miner.hotkey, assigned=assignments[miner.hotkey],
                                 body=reply.body if reply.status == "ok" else None,
                                 arrival_index=order.get(miner.hotkey, len(miners) + miner.uid),
                                 unit=units[miner.hotkey],
                                 failure=None if reply.status == "ok" else f"{reply.status}: {reply.detail}"))
    return received
