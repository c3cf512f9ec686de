"""How a miner gets the checkpoint a work order names, at the least bandwidth:

1. held already (it trained from it, or synced it last round);
2. replayed: the lead's record of the round that produced it (`order.base_round`) names the
   checkpoint that round was applied to and the contributions it merged; walking back through
   the records (at most MAX_REPLAY_ROUNDS) to a checkpoint held here, the miner fetches those
   records and contributions (compressed: a few hundred times smaller than the model) and
   replays the merges and outer steps bit for bit, as any auditor does
   (`template.audit.replay`). The result must hash to the order's base;
3. downloaded whole from the lead, as a joining miner (or one that fell behind) must.

Every fetch is bounded in bytes and, with the whole sync, by the order's deadline; the sync stops
the moment its order is replaced.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pydantic
import torch
from loguru import logger

from protocol.limits import MAX_CONTRIBUTION_BYTES, MAX_ROUND_RECORD_BYTES
from protocol.messages import TrainRequest
from template.audit.lead_check import parse_record
from template.audit.replay import ReplayError, replayed_state
from template.miner.checkpoint_cache import CheckpointCache, unless_stopped
from template.net.bounded import FetchError, fetch_bounded
from template.training.checkpoint import state_hash
from template.training.workload import Workload


# A miner further behind than this downloads the base whole (replaying more would cost more).
MAX_REPLAY_ROUNDS = 4


class ReplayUnavailable(RuntimeError):
    """The base cannot be replayed here (why, in one line); the miner downloads it instead."""


@dataclass(frozen=True)
class SyncedBase:
    state: dict[str, torch.Tensor]
    how: str  # held | replayed | downloaded
    bytes_fetched: int
    # The checkpoint the base's round was applied to and how many contributions it merged (what
    # the eager start needs to stand the last merge in for those still in flight): known when the
    # base was replayed here, now or in an earlier round.
    previous: dict[str, torch.Tensor] | None = None
    merged: int = 0


def lead_url_of(order: TrainRequest) -> str:
    """The lead's address: the order's checkpoint URL is its own `/v1/checkpoint/<base>` (the
    work-order check refuses any other)."""
    suffix = f"/v1/checkpoint/{order.base_checkpoint}"
    if not order.checkpoint_url.endswith(suffix):
        raise ReplayUnavailable("the order's checkpoint URL is not the lead's checkpoint endpoint")
    return order.checkpoint_url[:-len(suffix)]


class BaseSync:
    def __init__(self, cache: CheckpointCache, workload: Workload):
        self.cache, self.workload = cache, workload
        # base replayed here -> (the checkpoint its round was applied to, contributions merged)
        self._lineage: dict[str, tuple[str, int]] = {}

    def base_for(self, order: TrainRequest, timeout: float, should_stop: Callable[[], bool] = lambda: False
                 ) -> SyncedBase:
        digest = order.base_checkpoint
        held = self.cache.held(digest)
        if held is not None:  # a base that did not move since the last order (the lead is behind)
            applied, merged = self._lineage.get(digest, ("", 0))
            previous = self.cache.held(applied) if applied else None
            return SyncedBase(held, "held", 0, previous, merged if previous is not None else 0)
        started = time.monotonic()
        if order.base_round >= 0:
            try:
                state, fetched, previous, applied, merged = asyncio.run(
                    unless_stopped(self._replayed(order, timeout), should_stop))
                if not self.cache.size_of(applied):  # kept for a next order on the same base
                    self.cache.put(applied, previous)
                self.cache.put(digest, state)
                self._lineage = {digest: (applied, merged)}
                return SyncedBase(state, "replayed", fetched, previous, merged)
            except (ReplayUnavailable, ReplayError, FetchError, httpx.HTTPError, TimeoutError, ValueError,
                    pydantic.ValidationError) as exc:
                logger.info("round {}: base {} not replayed ({}); downloading it whole", order.round_index,
                            digest[:12], str(exc)[:200] or type(exc).__name__)
        left = timeout - (time.monotonic() - started)
        state = self.cache.get(order.checkpoint_url, digest, timeout=left, should_stop=should_stop,
                               max_bytes=self.workload.checkpoint_size_bound)
        return SyncedBase(state, "downloaded", self.cache.size_of(digest))

    async def _replayed(self, order: TrainRequest, timeout: float
                        ) -> tuple[dict[str, torch.Tensor], int, dict[str, torch.Tensor], str, int]:
        """Walk the lead's records back from `order.base_round` (each applied to the checkpoint the
        one before produced; a skipped round has none) to a checkpoint held here, at most
        MAX_REPLAY_ROUNDS of them, then replay them forward. Returns the base, the bytes fetched,
        the checkpoint the base's round was applied to with its hash, and how many it merged."""
        lead = lead_url_of(order)
        async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=timeout) as http:
            chain, total = await self._records_back_to_held(http, lead, order, timeout)
            start = self.cache.held(chain[-1].applied_checkpoint)
            steps = []
            for record in reversed(chain):
                bodies = {}
                for hotkey in record.accepted:
                    body = await fetch_bounded(
                        http, "GET", f"{lead}/v1/rounds/{record.round_index}/contributions/{hotkey}",
                        limit=MAX_CONTRIBUTION_BYTES, deadline_s=timeout)
                    if body.status != 200 or hashlib.sha256(body.body).hexdigest() != record.contributions.get(hotkey):
                        raise ReplayUnavailable(f"the merged contribution of {hotkey[:10]} in round "
                                                f"{record.round_index} is not the one the record names ({body.status})")
                    bodies[hotkey], total = body.body, total + body.size
                steps.append((record, bodies))
        state = previous = start
        for record, bodies in steps:
            previous = state
            state = await asyncio.to_thread(replayed_state, record, state, bodies, self.workload.architecture,
                                            self.workload.vocab_size)
        if state_hash(state) != order.base_checkpoint:
            raise ReplayUnavailable("the replay does not give the order's base")
        return state, total, previous, chain[0].applied_checkpoint, len(chain[0].accepted)

    async def _records_back_to_held(self, http: httpx.AsyncClient, lead: str, order: TrainRequest, timeout: float
                                    ) -> tuple[list, int]:
        """The lead's records from the one producing the order's base back to one applied to a
        checkpoint held here (newest first), and the bytes they took."""
        chain, total, wanted = [], 0, order.base_checkpoint
        index = order.base_round
        while index >= 0 and order.base_round - index < MAX_REPLAY_ROUNDS:
            fetched = await fetch_bounded(http, "GET", f"{lead}/v1/rounds/{index}", limit=MAX_ROUND_RECORD_BYTES,
                                          deadline_s=timeout)
            total += fetched.size
            if fetched.status == 404 and chain:  # a round the lead skipped: no record, nothing applied
                index -= 1
                continue
            if fetched.status != 200:
                raise ReplayUnavailable(f"the lead answered {fetched.status} for its record of round {index}")
            record = parse_record(json.loads(fetched.body))
            if record.round_index != index or record.new_checkpoint != wanted:
                raise ReplayUnavailable(f"the lead's record of round {index} does not produce checkpoint {wanted[:12]}")
            chain.append(record)
            if self.cache.held(record.applied_checkpoint) is not None:
                return chain, total
            wanted, index = record.applied_checkpoint, index - 1
        raise ReplayUnavailable(f"no checkpoint held here within {MAX_REPLAY_ROUNDS} rounds of the order's base")
