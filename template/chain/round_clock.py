"""Rounds on the chain's clock. Every validator derives the same schedule from block numbers
alone, so they agree on round boundaries without talking to each other."""
from __future__ import annotations

from dataclasses import dataclass

# A round's seed comes from the hash of the block this many before its start, so its work orders
# reach the miners while they still train the previous round: they sync the next base meanwhile
# and go straight on (2 s on simnet's 0.25 s blocks; knowing one's next pages early is harmless).
SEED_LEAD_BLOCKS = 8


@dataclass(frozen=True)
class RoundWindow:
    index: int
    start_block: int
    deadline_block: int  # miners must be done by here
    end_block: int  # the next round starts here

    @property
    def seed_block(self) -> int:
        """Its hash is the round's seed (the miners' page assignment); the work goes out from here."""
        return max(0, self.start_block - SEED_LEAD_BLOCKS)

    @property
    def eval_block(self) -> int:
        """Its hash picks the held-out and control pages: unknown to miners while they train."""
        return self.deadline_block + 1


def round_at(block: int, round_blocks: int, train_blocks: int) -> RoundWindow:
    index = block // round_blocks
    start = index * round_blocks
    return RoundWindow(index=index, start_block=start, deadline_block=start + train_blocks,
                       end_block=start + round_blocks)


def next_round(block: int, round_blocks: int, train_blocks: int, join_slack_blocks: int) -> RoundWindow:
    """The round to take part in: the current one if it began at most `join_slack_blocks` ago
    (miners still have time to train), else the next."""
    current = round_at(block, round_blocks, train_blocks)
    if block - current.start_block <= join_slack_blocks:
        return current
    return round_at(current.end_block, round_blocks, train_blocks)
