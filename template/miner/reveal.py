"""When a round's contribution may leave the miner: from the round's eval block on (the block
after the deadline), as the chain says. Before it, validators get only the signed commitment, so
no one can copy the bytes while commitments are still being taken."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from loguru import logger

from template.chain.round_clock import round_at


class RevealClock:
    def __init__(self, read_block: Callable[[], Awaitable[int]], round_blocks: int, train_blocks: int,
                 refresh_seconds: float = 0.5):
        """`read_block`: the chain's current block; read at most every `refresh_seconds`."""
        self.read_block = read_block
        self.round_blocks, self.train_blocks = round_blocks, train_blocks
        self.refresh_seconds = refresh_seconds
        self.block, self.read_at = -1, float("-inf")

    def reveal_block(self, round_index: int) -> int:
        return round_at(round_index * self.round_blocks, self.round_blocks, self.train_blocks).eval_block

    async def revealed(self, round_index: int) -> bool:
        due = self.reveal_block(round_index)
        if self.block < due and time.monotonic() - self.read_at >= self.refresh_seconds:
            self.read_at = time.monotonic()
            try:
                self.block = max(self.block, await self.read_block())
            except Exception as exc:  # the chain briefly unreachable: not revealed yet, ask again later
                logger.warning("cannot read the chain's block for a reveal: {}", exc)
        return self.block >= due
