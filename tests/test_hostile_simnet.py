"""A hostile client against a real simnet process over loopback: admin routes only on a manual
clock, deep JSON answered 400, stalled or trickled bodies cut off by a deadline, and no account
rows for empty keys."""
from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import bittensor as bt
import httpx
import pytest

from simnet import cli
from simnet.server import BODY_TIMEOUT, MAX_BODY
from simnet.state import EXISTENTIAL_DEPOSIT
from template.chain.simnet_process import DevWallet, SimnetProcess

ALICE = DevWallet.from_uri("//Alice")
BOB = DevWallet.from_uri("//Bob")
DEEP = 200_000


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with SimnetProcess(tmp_path_factory.mktemp("hostile-simnet") / "chain.db") as process:
        yield process


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    with SimnetProcess(tmp_path_factory.mktemp("hostile-simnet-clock") / "chain.db", manual_clock=False,
                       block_time=1.0) as process:
        yield process


def raw_exchange(port: int, request: bytes, *, trickle: bytes = b"", every: float = 0.0,
                 half_close: bool = False, timeout: float = 3 * BODY_TIMEOUT) -> tuple[int, bytes, float]:
    """Send `request`, then `trickle` one byte at a time; return (status, body, seconds to reply)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(request)
        for byte in trickle:
            try:
                conn.sendall(bytes([byte]))
            except OSError:  # the server has given up on us
                break
            time.sleep(every)
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < _length(reply):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1."), f"no HTTP reply: {reply[:200]!r}"
    return int(head.split()[1]), body, time.monotonic() - started


def _length(reply: bytes) -> int:
    for line in reply.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def post_head(path: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def account_rows(sim: SimnetProcess) -> set[str]:
    with sqlite3.connect(sim.db_path) as db:
        return {key for (key,) in db.execute("SELECT key FROM kv WHERE ns = 'accounts'")}


# -- admin routes ------------------------------------------------------------------------------


def test_admin_routes_are_refused_on_a_running_clock(running):
    head = httpx.get(running.url + "/health", timeout=10).json()["block"]
    advance = httpx.post(running.url + "/admin/advance", json={"blocks": 10_000}, timeout=10)
    assert advance.status_code == 403 and "--manual-clock" in advance.json()["error"]["message"]
    reveal = httpx.post(running.url + "/admin/reveal_weights", timeout=10, json={
        "netuid": 1, "hotkey": ALICE.hotkey.ss58_address, "uids": [0], "weights": [1]})
    assert reveal.status_code == 403
    assert cli.main(["advance", "--url", running.url, "--blocks", "5"]) == 1
    after = httpx.get(running.url + "/health", timeout=10).json()
    assert after["manual_clock"] is False and after["block"] < head + 100  # only the clock moved it


def test_admin_routes_serve_a_manual_clock(sim):
    head = httpx.get(sim.url + "/health", timeout=10).json()["block"]
    assert sim.advance(3) == head + 3
    assert sim.reveal_weights(1, ALICE.hotkey.ss58_address, [0], [1])["success"] is False  # no such commit


# -- bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"[" * DEEP + b"]" * DEEP,
    b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    b'{"method": "query", "params": {"module": "System", "item": "Account", "params": '
    + b"[" * 40 + b"]" * 40 + b"}}",
    b'{"method": "submit", "params": {"envelope": {"signature": "00", "payload": "'
    + b"[" * 5000 + b"]" * 5000 + b'"}}}',
])
def test_deeply_nested_json_is_answered_400(sim, body):
    response = httpx.post(sim.url + "/rpc", content=body, timeout=30)
    assert response.status_code == 400 and "error" in response.json()
    assert httpx.get(sim.url + "/health", timeout=10).json()["ok"] is True


def test_oversized_and_chunked_bodies_are_refused_unread(sim):
    status, _, _ = raw_exchange(sim.port, post_head("/rpc", MAX_BODY + 1))
    assert status == 413
    chunked = (b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"2\r\n{}\r\n0\r\n\r\n")
    status, _, _ = raw_exchange(sim.port, chunked)
    assert status == 411


def test_a_body_that_ends_early_is_answered_400(sim):
    status, body, _ = raw_exchange(sim.port, post_head("/rpc", 100) + b'{"method"', half_close=True)
    assert status == 400 and b"ended after 9 of 100" in body


def test_stalled_and_trickled_bodies_are_cut_off_at_the_deadline(sim):
    with ThreadPoolExecutor(max_workers=2) as pool:
        silent = pool.submit(raw_exchange, sim.port, post_head("/rpc", 100))
        trickled = pool.submit(raw_exchange, sim.port, post_head("/rpc", 100), trickle=b" " * 99,
                               every=BODY_TIMEOUT / 20)
        time.sleep(1)
        started = time.monotonic()
        assert httpx.get(sim.url + "/health", timeout=5).json()["ok"] is True  # others are served meanwhile
        assert time.monotonic() - started < 2
        for held in (silent.result(), trickled.result()):
            status, body, seconds = held
            assert status == 408 and b"not received within" in body
            assert BODY_TIMEOUT - 1 <= seconds <= BODY_TIMEOUT + 5


# -- accounts ----------------------------------------------------------------------------------


def test_zero_and_dust_transfers_create_no_accounts(sim):
    before = account_rows(sim)
    strangers = [DevWallet.from_uri(f"//Hostile{i}") for i in range(6)]

    async def go():
        async with sim.client() as client:
            results = []
            for i, wallet in enumerate(strangers[:3]):  # unfunded keys sending nothing to fresh keys
                call = bt.calls.Balances.transfer_allow_death(dest=strangers[3 + i].coldkey.ss58_address, value=0)
                results.append(await client.submit_call(call, wallet))
            remark = await client.submit_call(bt.calls.System.remark(remark=b"x"), strangers[0])
            dust = await client.submit_call(bt.calls.Balances.transfer_allow_death(
                dest=strangers[5].coldkey.ss58_address, value=EXISTENTIAL_DEPOSIT - 1), ALICE)
            return results, remark, dust

    zero_transfers, remark, dust = run(go())
    assert [r.error.name for r in zero_transfers] == ["ExistentialDeposit"] * 3
    assert remark.success  # a no-op the chain accepts, and keeps no row for
    assert not dust.success and dust.error.name == "ExistentialDeposit"
    assert account_rows(sim) == before


def test_transfers_of_the_existential_deposit_still_work(sim):
    newcomer = DevWallet.from_uri("//HostileNewcomer")

    async def go():
        async with sim.client() as client:
            opened = await client.submit_call(bt.calls.Balances.transfer_allow_death(
                dest=newcomer.coldkey.ss58_address, value=EXISTENTIAL_DEPOSIT), ALICE)
            topped_up = await client.submit_call(bt.calls.Balances.transfer_allow_death(
                dest=BOB.coldkey.ss58_address, value=1), ALICE)  # Bob already holds more than the deposit
            spent = await client.submit_call(bt.calls.Balances.transfer_allow_death(
                dest=ALICE.coldkey.ss58_address, value=EXISTENTIAL_DEPOSIT), newcomer)
            return opened, topped_up, spent

    opened, topped_up, spent = run(go())
    assert opened.success and topped_up.success and spent.success, (opened.error, topped_up.error, spent.error)
    assert newcomer.coldkey.ss58_address in account_rows(sim)  # it holds a nonce now
