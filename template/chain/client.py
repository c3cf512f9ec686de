"""The one place neurons get a chain client: the real SDK for real networks, simnet for "sim".

``open_client`` returns a ``bt.Client`` that is **not yet connected**: use it as
``async with open_client(net) as client:`` or ``client = await open_client(net).connect()``.
For blocking code wrap the same backend: ``bt.Subtensor(...)`` takes ``substrate=`` too.

``start_simnet_process`` and ``wait_until_ready`` start a simnet server for scripts and tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import bittensor as bt
import httpx

from simnet.client import SIM_LABEL, SimSubstrate

SIM_NETWORK = "sim"
DEFAULT_SIM_ENDPOINT = "http://127.0.0.1:9946"


def open_client(network: str, sim_endpoint: str = DEFAULT_SIM_ENDPOINT) -> bt.Client:
    """``"sim"`` -> simnet at ``sim_endpoint``; anything else (local, test, finney, ws://...)
    -> the SDK's own RPC backend. The client is returned unconnected."""
    if network == SIM_NETWORK:
        return bt.Client(SIM_LABEL, substrate=SimSubstrate(sim_endpoint))
    return bt.Client(network)


def start_simnet_process(db_path: str | Path, port: int, block_time: float = 0.25,
                         manual_clock: bool = False, host: str = "127.0.0.1",
                         log_path: str | Path | None = None) -> subprocess.Popen:
    """Start ``python -m simnet serve`` in a child process (stop it with
    ``proc.terminate(); proc.wait()``). Output goes to ``log_path`` or is discarded."""
    cmd = [sys.executable, "-m", "simnet", "serve", "--db", str(db_path),
           "--host", host, "--port", str(port), "--block-time", str(block_time)]
    if manual_clock:
        cmd.append("--manual-clock")
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p))
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=str(root), env=env)


def wait_until_ready(url: str = DEFAULT_SIM_ENDPOINT, timeout: float = 30.0, process=None) -> int:
    """Poll ``/health`` until simnet answers; returns its block height. With the simnet
    `process`, stop as soon as it has exited (a refused database) instead of at the timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"simnet exited with status {process.returncode} before it served {url} "
                               "(its log says why)")
        try:
            response = httpx.get(f"{url.rstrip('/')}/health", timeout=2.0)
            if response.status_code == 200:
                return int(response.json()["block"])
        except httpx.HTTPError as error:
            last_error = error
        time.sleep(0.1)
    raise TimeoutError(f"simnet at {url} not ready after {timeout}s ({last_error})")
