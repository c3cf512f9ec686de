"""An outside observer of what a hotkey commits on chain. The chain keeps only a hotkey's current
commitment, so the history the audit check needs is read as it happens: the commitment is polled
(faster than a validator commits, once a round) and every change is appended to a JSON-lines file
with the block it was seen at."""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from loguru import logger

from template.chain.neuron_chain import NeuronChain


class CommitmentWatch:
    def __init__(self, sim_url: str, netuid: int, hotkey: str, path: Path, every: float = 0.25):
        self.chain = NeuronChain("sim", sim_url, wallet=None, netuid=netuid)
        self.hotkey, self.path, self.every = hotkey, path, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._watch()), name="commitments", daemon=True)

    def start(self) -> "CommitmentWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        """One last read, so a commitment made just before the stop is not missed."""
        self._stop.set()
        self._thread.join(timeout=10)

    async def _watch(self) -> None:
        await self.chain.connect()
        seen: set[str] = set()
        try:
            while True:
                stopping = self._stop.is_set()
                try:
                    digests = await self.chain.committed_digests(self.hotkey)
                    if digests and digests != seen:
                        seen = digests
                        block = await self.chain.block()
                        with self.path.open("a") as handle:
                            handle.write(json.dumps({"block": block, "hotkey": self.hotkey,
                                                     "digests": sorted(digests)}) + "\n")
                except Exception as exc:  # the chain stopping under us at the end of a run
                    logger.debug("commitment read failed: {}", exc)
                if stopping:
                    return
                await asyncio.sleep(self.every)
        finally:
            await self.chain.close()
