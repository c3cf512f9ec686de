"""Helpers for tests and scripts that drive a simnet node through the real SDK.

    with SimnetProcess(tmp_path / "chain.db") as sim:      # manual clock, free port
        client = sim.client()                              # unconnected bt.Client
        sim.advance(10)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import bittensor as bt
import httpx

from template.chain.bootstrap import DevWallet, create_wallet
from template.chain.client import open_client, start_simnet_process, wait_until_ready
from template.utils.ports import free_port

__all__ = ["DevWallet", "SimnetProcess", "create_wallet", "free_port"]


class SimnetProcess:
    """A simnet server in a child process; ``restart()`` keeps the same database."""

    def __init__(self, db_path: Path, manual_clock: bool = True, block_time: float = 0.25,
                 log_path: Optional[Path] = None):
        self.db_path = Path(db_path)
        self.manual_clock = manual_clock
        self.block_time = block_time
        self.log_path = log_path or self.db_path.with_suffix(".log")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> "SimnetProcess":
        self.proc = start_simnet_process(self.db_path, self.port, self.block_time,
                                         self.manual_clock, log_path=self.log_path)
        wait_until_ready(self.url, timeout=30, process=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "SimnetProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def client(self) -> bt.Client:
        return open_client("sim", self.url)

    def advance(self, blocks: int) -> int:
        response = httpx.post(f"{self.url}/admin/advance", json={"blocks": blocks}, timeout=60)
        response.raise_for_status()
        return int(response.json()["block"])

    def reveal_weights(self, netuid: int, hotkey: str, uids: list[int], weights: list[int],
                       version_key: int = 0) -> dict:
        response = httpx.post(f"{self.url}/admin/reveal_weights", timeout=30, json={
            "netuid": netuid, "hotkey": hotkey, "uids": uids, "weights": weights,
            "version_key": version_key})
        return response.json()
