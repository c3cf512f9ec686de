"""No peer can stall or exhaust a neuron over HTTP: every outbound request ends within its
deadline however slowly the peer answers, bodies are read only up to their limit (an error
answer only as far as its first few KB), a checkpoint larger than announced is cut off, and the
miner never repeats to a validator what a third-party server said.

The hostile peers are raw asyncio servers on 127.0.0.1, each in its own thread."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import tracemalloc

import pytest
import torch
from bittensor.sp_core import Keypair
from loguru import logger

from protocol.auth import RequestVerifier, sign_commitment
from protocol.messages import InfoResponse, TrainRequest
from template.miner.app import create_miner_app
from template.miner.reveal import RevealClock
from template.miner.checkpoint_cache import CheckpointCache
from template.miner.worker import MinerWorker
from template.net.checkpoint_client import (CheckpointFetchError, announced_checkpoint, download_checkpoint,
                                            fetch_latest_checkpoint, probe_latest)
from template.net.server import BackgroundServer
from template.training.checkpoint import checkpoint_bytes, state_hash
from template.training.presets import PRESET_SETTINGS
from template.training.workload import Workload
from template.utils.ports import free_port
from template.validator.miner_client import MinerClient, MinerEndpoint, Reply, ReplyStatus
from template.validator.records_board import Lead, RoundRecordBoard

MINER = Keypair.create_from_uri("//HostileHttpMiner")
VALIDATOR = Keypair.create_from_uri("//HostileHttpValidator")
HASH = "ab" * 32
DEADLINE = 1.0  # the deadline every call below is given
SLACK = 1.0  # what a call may take past it (thread hops, a loaded CI machine)
HARD_STOP = 6.0  # where the test stops waiting for a call that ignores its deadline
MB = 1024 * 1024
FLOOD_BYTES = 50 * MB
CHUNK = b"x" * (64 * 1024)
COMMITMENT = sign_commitment(MINER, 7, 3, b"x" * 1000)
STATE = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(4)}


class RawServer:
    """An HTTP peer that answers however `handler(server, method, path, writer)` writes it.
    `sent` counts the body bytes handed to the socket."""

    def __init__(self, handler):
        self.handler = handler
        self.sent = 0
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.tasks: set[asyncio.Task] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "RawServer":
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self.port), self.loop).result(5)
        return self

    def __exit__(self, *exc) -> None:
        async def shut():
            self.server.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _serve(self, reader, writer) -> None:
        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            while True:  # keep-alive: one request after another on the connection
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                if await self.handler(self, method, path, writer) is False:
                    return  # answered until close
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self.tasks.discard(task)
            writer.close()

    async def send(self, writer, data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def body(self, writer, data: bytes) -> None:
        await self.send(writer, data)
        self.sent += len(data)

    async def flood(self, writer, total: int) -> None:
        while self.sent < total:
            await self.body(writer, CHUNK)


def head(status: int, length: int | None = None, extra: str = "") -> bytes:
    framing = f"content-length: {length}\r\n" if length is not None else "connection: close\r\n"
    return f"HTTP/1.1 {status} X\r\n{framing}{extra}\r\n".encode()


def answer(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    return head(status, len(body), f"content-type: {content_type}\r\n") + body


async def drip(server: RawServer, writer, data: bytes, interval: float = 0.5) -> None:
    for i in range(len(data)):
        await server.send(writer, data[i:i + 1])
        await asyncio.sleep(interval)


def endpoint(server: RawServer) -> MinerEndpoint:
    return MinerEndpoint(uid=1, hotkey=MINER.ss58_address, url=server.url)


def train_order(checkpoint_url: str, round_index: int = 3) -> TrainRequest:
    recipe = PRESET_SETTINGS["tiny"].recipe
    return TrainRequest(netuid=7, round_index=round_index, round_block=300, seed=HASH, base_checkpoint=HASH,
                        dataset=HASH, model_preset="tiny", checkpoint_url=checkpoint_url,
                        pages=list(range(recipe.pages_per_miner)), recipe=recipe, deadline_block=340,
                        deadline_unix=time.time() + 60)


INFO = InfoResponse(hotkey=MINER.ss58_address, version="2.0", device="cpu", capacity_gb=1.0,
                    model_preset="tiny").model_dump_json().encode()
ANNOUNCEMENT = json.dumps({"round_index": 4, "sha256": HASH, "size_bytes": 1000, "model_preset": "tiny",
                           "vocab_size": 3}).encode()


# --- deadlines: a peer answering one byte per 0.5 s ------------------------------------------

async def within_hard_stop(call):
    """(result or exception, seconds taken); a call past HARD_STOP fails the test."""
    t0 = time.monotonic()
    try:
        result = await asyncio.wait_for(call, HARD_STOP)
    except asyncio.TimeoutError:
        pytest.fail(f"still waiting after {HARD_STOP} s for a call given {DEADLINE} s")
    except Exception as exc:  # the call's own refusal: what is tested here is when it came
        result = exc
    return result, time.monotonic() - t0


def miner_calls(client: MinerClient, miner: MinerEndpoint):
    return {
        "fetch_commitment": lambda: client.fetch_commitment(miner, 7, 3),
        "fetch_contribution": lambda: client.fetch_contribution(miner, COMMITMENT),
        "info": lambda: client.info(miner),
        "send_work": lambda: client.send_work(miner, train_order("http://127.0.0.1:1/x")),
    }


@pytest.mark.parametrize("dripped", ["headers", "body"])
@pytest.mark.parametrize("call", ["fetch_commitment", "fetch_contribution", "info", "send_work"])
def test_a_dripping_miner_costs_the_validator_only_the_deadline(call, dripped):
    async def handler(server, method, path, writer):
        status = 202 if path == "/v1/train" else 200
        if dripped == "headers":
            await drip(server, writer, answer(status, b"{}"))
        else:
            await server.send(writer, head(status, 1000))
            await drip(server, writer, b"x" * 1000)

    async def run():
        client = MinerClient(VALIDATOR, timeout=DEADLINE)
        try:
            return await within_hard_stop(miner_calls(client, endpoint(server))[call]())
        finally:
            await client.close()

    with RawServer(handler) as server:
        reply, seconds = asyncio.run(run())
    assert seconds < DEADLINE + SLACK, f"{call} took {seconds:.1f} s"
    if call == "info":
        assert reply is None
    else:
        assert reply.status == "unreachable" and "within" in reply.detail


def test_a_long_poll_gets_its_wait_on_top_of_the_deadline_and_no_more():
    async def handler(server, method, path, writer):
        await server.send(writer, head(200, 1000))
        await drip(server, writer, b"x" * 1000)

    async def run():
        client = MinerClient(VALIDATOR, timeout=DEADLINE)
        try:
            return await within_hard_stop(client.fetch_commitment(endpoint(server), 7, 3, wait=1.0,
                                                                  deadline_s=1.5))
        finally:
            await client.close()

    with RawServer(handler) as server:
        reply, seconds = asyncio.run(run())
    assert reply.status == "unreachable" and 1.4 < seconds < 1.5 + SLACK


@pytest.mark.parametrize("call", ["announcement", "probe", "download", "fetch_latest"])
def test_a_dripping_validator_cannot_hold_a_checkpoint_fetch(call):
    async def handler(server, method, path, writer):
        if path == "/v1/checkpoint/latest" and call == "fetch_latest":
            await server.send(writer, answer(200, ANNOUNCEMENT))
            return
        await server.send(writer, head(200, 1000, "content-type: application/json\r\n"))
        await drip(server, writer, b" " * 1000)

    with RawServer(handler) as server:
        calls = {
            "announcement": lambda: announced_checkpoint(server.url, DEADLINE),
            "probe": lambda: probe_latest(server.url, DEADLINE),
            "download": lambda: download_checkpoint(f"{server.url}/v1/checkpoint/{HASH}", HASH, DEADLINE),
            "fetch_latest": lambda: fetch_latest_checkpoint(server.url, held="", timeout=DEADLINE),
        }
        result, seconds = asyncio.run(within_hard_stop(calls[call]()))
    # fetch_latest: the announcement came at once; the 1000-byte download gets DEADLINE plus its
    # allowance at the slowest accepted rate (well under a millisecond here)
    assert seconds < DEADLINE + SLACK, f"{call} took {seconds:.1f} s"
    if call == "probe":
        assert result is None
    else:
        assert isinstance(result, CheckpointFetchError), repr(result)


def test_a_dripping_checkpoint_url_cannot_hold_the_miner(tmp_path):
    async def handler(server, method, path, writer):
        await server.send(writer, head(200, 1000))
        await drip(server, writer, b"x" * 1000)

    cache = CheckpointCache(tmp_path, timeout=DEADLINE)
    outcome: list[BaseException] = []

    def fetch():  # the worker thread's call, as the miner makes it
        try:
            cache.get(f"{server.url}/c", HASH)
        except Exception as exc:
            outcome.append(exc)

    with RawServer(handler) as server:
        t0 = time.monotonic()
        thread = threading.Thread(target=fetch, daemon=True)
        thread.start()
        thread.join(HARD_STOP)
        seconds = time.monotonic() - t0
        assert not thread.is_alive(), f"still fetching after {HARD_STOP} s with a {DEADLINE} s timeout"
    assert seconds < DEADLINE + SLACK and len(outcome) == 1
    assert not list(tmp_path.iterdir())  # nothing kept of it


def test_a_checkpoint_download_stops_the_moment_its_order_is_no_longer_wanted(tmp_path):
    """A permit holder's order pointing at a dripping server must not hold the miner's worker once
    the lead's order replaces it: the download ends within a poll, long before its timeout."""
    async def handler(server, method, path, writer):
        await server.send(writer, head(200, 1000))
        await drip(server, writer, b"x" * 1000)

    cache = CheckpointCache(tmp_path, timeout=60.0)
    replaced = threading.Event()
    outcome: list[BaseException] = []

    def fetch():
        try:
            cache.get(f"{server.url}/c", HASH, should_stop=replaced.is_set)
        except Exception as exc:
            outcome.append(exc)

    with RawServer(handler) as server:
        thread = threading.Thread(target=fetch, daemon=True)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # still dripping
        replaced.set()
        t0 = time.monotonic()
        thread.join(HARD_STOP)
        seconds = time.monotonic() - t0
        assert not thread.is_alive(), f"the replaced order's download went on for {HARD_STOP} s"
    assert seconds < 0.5 + SLACK and len(outcome) == 1
    assert "could not be fetched" in str(outcome[0])
    assert not list(tmp_path.iterdir())


def test_a_checkpoint_larger_than_the_model_can_be_is_cut_off_as_it_streams(tmp_path):
    async def handler(server, method, path, writer):
        await server.send(writer, head(200))  # no length: read until close
        await server.flood(writer, FLOOD_BYTES)

    cache = CheckpointCache(tmp_path, timeout=10.0)
    with RawServer(handler) as server:
        with pytest.raises(Exception, match="could not be fetched"):
            cache.get(f"{server.url}/c", HASH, max_bytes=MB)
        assert server.sent < 16 * MB  # cut off near the model's bound, not read to the end


def test_a_dripping_lead_cannot_stretch_the_wait_for_its_record():
    async def handler(server, method, path, writer):
        await server.send(writer, head(200, 1000, "content-type: application/json\r\n"))
        await drip(server, writer, b" " * 1000)

    async def no_commitments(hotkey):
        return set()

    board = RoundRecordBoard(no_commitments, poll_seconds=0.1)
    with RawServer(handler) as server:
        result, seconds = asyncio.run(within_hard_stop(
            board.wait_for(Lead("5Lead", server.url, is_me=False), 3, seconds=DEADLINE)))
    published, problem = result
    assert seconds < DEADLINE + SLACK and published is None and "within" in problem


# --- memory: 50 MB answers are refused without being read whole -------------------------------

def peak_traced_bytes(call) -> tuple[object, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def flooding(status: int, declared: bool):
    async def handler(server, method, path, writer):
        await server.send(writer, head(status, FLOOD_BYTES if declared else None,
                                       "content-type: application/json\r\n"))
        await server.flood(writer, FLOOD_BYTES)
        return False
    return handler


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
@pytest.mark.parametrize("call,status", [("fetch_commitment", 500), ("fetch_commitment", 200),
                                         ("fetch_contribution", 500), ("fetch_contribution", 200),
                                         ("send_work", 500), ("info", 500), ("info", 200)])
def test_a_50mb_answer_is_refused_without_reading_it_whole(call, status, declared):
    async def run():
        client = MinerClient(VALIDATOR, timeout=5.0)
        try:
            return await asyncio.wait_for(miner_calls(client, endpoint(server))[call](), 20)
        finally:
            await client.close()

    with RawServer(flooding(status, declared)) as server:
        reply, peak = peak_traced_bytes(lambda: asyncio.run(run()))
        sent = server.sent
    assert peak < 8 * MB, f"{call}: {peak / MB:.1f} MB traced for a {FLOOD_BYTES // MB} MB answer"
    assert sent < FLOOD_BYTES, f"{call} read all {sent / MB:.0f} MB"
    if call == "info":
        assert reply is None
    else:
        # an error body is cut at its bound; a 200 is refused as larger than its limit, unread
        assert reply.status == "refused" and reply.http_status == (None if status == 200 else status)
        assert len(reply.detail) <= 310


# --- a checkpoint larger than announced ------------------------------------------------------

@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
def test_a_checkpoint_larger_than_announced_is_cut_off(declared):
    data = checkpoint_bytes(STATE)
    digest = state_hash(STATE)
    extra = 20 * MB
    announcement = json.dumps({"round_index": 4, "sha256": digest, "size_bytes": len(data),
                               "model_preset": "tiny", "vocab_size": 3}).encode()

    async def handler(server, method, path, writer):
        if path == "/v1/checkpoint/latest":
            await server.send(writer, answer(200, announcement))
            return
        await server.send(writer, head(200, len(data) + extra if declared else None))
        await server.body(writer, data)
        await server.flood(writer, len(data) + extra)
        return False

    with RawServer(handler) as server:
        with pytest.raises(CheckpointFetchError, match="exceeds"):
            asyncio.run(asyncio.wait_for(fetch_latest_checkpoint(server.url, held=""), 20))
        assert server.sent < len(data) + extra


# --- the miner does not repeat what a checkpoint URL's server said ----------------------------

LEAKY_BODY = b"UPSTREAM-SECRET 10.9.8.7 token=hunter2"
BAD_HEADER = (987654321).to_bytes(8, "little") + b"12345678"  # parses as a safetensors header length


@pytest.mark.parametrize("upstream", ["status", "bytes", "refused"])
def test_the_miners_refusal_does_not_echo_the_checkpoint_server(tmp_path, upstream):
    async def handler(server, method, path, writer):
        if upstream == "status":
            await server.send(writer, answer(418, LEAKY_BODY, "text/plain"))
        else:
            await server.send(writer, answer(200, BAD_HEADER, "application/octet-stream"))

    no_pages = Workload("tiny", 1024, pages=None, recipe=PRESET_SETTINGS["tiny"].recipe)  # it never trains
    worker = MinerWorker(MINER, workload=no_pages, behaviour="honest", state_dir=tmp_path, copy_from_dir=None,
                         device=torch.device("cpu"))
    verifier = RequestVerifier(MINER.ss58_address, lambda hk: None if hk == VALIDATOR.ss58_address else "no")

    async def any_assignment(order, sender):
        return None

    info = InfoResponse(hotkey=MINER.ss58_address, version="2.0", device="cpu", capacity_gb=1.0, model_preset="tiny")
    port = free_port()
    async def genesis() -> int:
        return 0

    app_server = BackgroundServer(create_miner_app(worker, verifier, 7, any_assignment, info,
                                                   RevealClock(genesis, 100, 40)), "127.0.0.1", port).start()
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="WARNING")

    async def fetch():
        client = MinerClient(VALIDATOR, timeout=5.0)
        try:
            return await client.fetch_commitment(MinerEndpoint(1, MINER.ss58_address, f"http://127.0.0.1:{port}"),
                                                 7, 3, wait=8.0)
        finally:
            await client.close()

    try:
        with RawServer(handler) as upstream_server:
            url = f"http://127.0.0.1:{free_port()}/c" if upstream == "refused" else f"{upstream_server.url}/c"
            assert worker.submit(train_order(url)) == "accepted"
            reply = asyncio.run(fetch())
    finally:
        logger.remove(sink)
        stop.set()
        thread.join(5)
        app_server.stop()
    assert reply.status == "refused", reply
    for leaked in ("418", "UPSTREAM", "hunter2", "987654321", "16 bytes", "connection", "Errno", "ConnectError"):
        assert leaked not in reply.detail, reply.detail
    assert reply.detail == "410 round 3 failed on this miner" and reply.http_status == 410
    cause = {"status": "418", "bytes": "987654321", "refused": "ConnectError"}[upstream]
    assert any(cause in line for line in logged), logged  # the cause stays in the miner's own log


# --- typed reply -----------------------------------------------------------------------------

def test_reply_status_is_typed_and_still_equals_its_string():
    late = Reply("late", "no contribution by the deadline")
    assert late.status is ReplyStatus.LATE and late.status == "late" and f"{late.status}" == "late"
    assert late.http_status is None
    assert {s.value for s in ReplyStatus} == {"ok", "pending", "refused", "unreachable", "late"}
    with pytest.raises(ValueError):
        Reply("lost")


def test_reply_carries_the_http_status_as_an_int():
    answers = {3: (404, b'{"detail": "no work for round 3"}'), 4: (410, b'{"detail": "round 4 failed"}'),
               5: (403, b'{"detail": "not permitted"}'), 6: (202, b'{"status": "training"}')}

    async def handler(server, method, path, writer):
        status, body = answers[int(path.split("round=")[1].split("&")[0])]
        await server.send(writer, answer(status, body))

    async def run():
        client = MinerClient(VALIDATOR, timeout=DEADLINE)
        try:
            replies = [await client.fetch_commitment(endpoint(server), 7, r) for r in answers]
            dead = await client.fetch_commitment(MinerEndpoint(2, MINER.ss58_address,
                                                               f"http://127.0.0.1:{free_port()}"), 7, 3)
            return replies, dead
        finally:
            await client.close()

    with RawServer(handler) as server:
        replies, dead = asyncio.run(run())
    assert [r.http_status for r in replies] == [404, 410, 403, 202]
    assert [r.status for r in replies] == ["refused", "refused", "refused", "pending"]
    assert replies[0].detail == "404 no work for round 3"
    assert dead.status is ReplyStatus.UNREACHABLE and dead.http_status is None
