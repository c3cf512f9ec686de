"""The one place neurons get a chain client: the real SDK for real networks, simnet for "sim".

``open_client`` returns a ``bt.Client`` that is **not yet connected**: use it as
``async with open_client(net) as client:`` or ``client = await open_client(net).connect()``.
For blocking code wrap the same backend: ``bt.Subtensor(...)`` takes ``substrate=`` too.

``start_simnet_process`` and ``wait_until_ready`` start a simnet server for scripts and tests.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import bittensor as bt
from bittensor import settings as bt_settings
import httpx

from simnet.client import SIM_LABEL, SimSubstrate

SIM_NETWORK = "sim"
DEFAULT_SIM_ENDPOINT = "http://127.0.0.1:9946"
LOCAL_NETWORKS = (SIM_NETWORK, "local")


def open_client(network: str, endpoint: str = "") -> bt.Client:
    """``"sim"`` -> simnet at ``endpoint`` (default DEFAULT_SIM_ENDPOINT); anything else (local,
    test, finney, ws://...) -> the SDK's own RPC backend, at ``endpoint`` when one is given (it
    overrides the network's own, as the template's --subtensor.chain_endpoint does). The client
    is returned unconnected."""
    if network == SIM_NETWORK:
        return bt.Client(SIM_LABEL, substrate=SimSubstrate(endpoint or DEFAULT_SIM_ENDPOINT))
    return bt.Client(endpoint or network)


def check_network(network: str, endpoint: str) -> str:
    """Why `network` with `endpoint` cannot be connected to ("" when it can)."""
    if network != SIM_NETWORK and not _is_ws(network) and network not in bt_settings.NETWORKS:
        return (f"--subtensor.network {network!r}: expected {SIM_NETWORK}, "
                f"{', '.join(sorted(bt_settings.NETWORKS))} or a ws(s):// endpoint")
    if not endpoint:
        return ""
    if network == SIM_NETWORK and not endpoint.startswith(("http://", "https://")):
        return f"--subtensor.chain_endpoint {endpoint!r}: simnet speaks HTTP; expected http://host:port"
    if network != SIM_NETWORK and not _is_ws(endpoint):
        return (f"--subtensor.chain_endpoint {endpoint!r}: a subtensor node speaks WebSocket; "
                "expected ws://host:port or wss://host:port")
    return ""


def chain_url(network: str, endpoint: str) -> str:
    """The URL a neuron with these flags connects to."""
    if network == SIM_NETWORK:
        return endpoint or DEFAULT_SIM_ENDPOINT
    return endpoint or (network if _is_ws(network) else bt_settings.NETWORKS.get(network, network))


def is_local_chain(network: str, endpoint: str) -> bool:
    """Whether the chain runs on this machine (sim, local, or an endpoint on a loopback address):
    only there may a neuron publish 127.0.0.1."""
    if network in LOCAL_NETWORKS and not endpoint:
        return True
    host = urlsplit(chain_url(network, endpoint)).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ws(url: str) -> bool:
    return url.startswith(("ws://", "wss://"))


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
