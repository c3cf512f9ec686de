"""The permit-holding attacker of the campaign: a validator hotkey with stake and a permit that
runs no validator, only signs requests to the honest miners with its key, every one bounded in
time. Each round it

* item 7, at the round's first block (racing the lead's order): sends each miner an order that is
  right in every field the miner can check, for a base hash no one holds, whose checkpoint URL is
  the attacker's own published axon, which that round drips, floods or hangs up; then orders
  whose URL is somewhere else (a port with nothing, another loopback server);
* item 3: sends correctly signed forged orders (a round off the schedule, a deadline already
  passed, the round before, an early order for the next round);
* item 6: asks for the round's contribution (and commitment) until the round's eval block, then
  once after it.

Every answer is logged (status, its first KB, the chain's block before and after)."""
from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass

import httpx
from loguru import logger

from bench.raw_http import RawServer, Request, answer, drip, flood, head, send
from protocol.auth import sign_request
from protocol.messages import TrainRequest
from template.chain.round_clock import RoundWindow, round_at
from template.net.bounded import FetchError, fetch_bounded
from template.training.assignment import assigned_pages, round_seed
from template.training.workload import Workload
from template.utils.ports import free_port
from template.validator.miner_client import MinerEndpoint

MB = 1024 * 1024
GB = 1024 * MB
REQUEST_DEADLINE = 5.0  # seconds any one attacker request may take
ANSWER_LIMIT = 64 * MB  # what the attacker reads of an answer (a contribution, if one leaks early)
SECRET = b"UPSTREAM-SECRET token=hunter2 "  # what the attacker's axon says: no miner answer may repeat it


class AttackerAxon:
    """The attacker's published axon: a loopback server that each round serves the base
    checkpoint of its orders one way (`MODES`), and answers anything else with a quick 404 (the
    validator asks every axon for /v1/info and, in its lead election, /v1/checkpoint/latest)."""

    MODES = ["drip", "flood", "hang up"]

    def __init__(self):
        self.mode = self.MODES[0]
        self.connections: list[dict] = []
        self.floods = itertools.count()
        self.server = RawServer(self.handle)

    @property
    def port(self) -> int:
        return self.server.port

    def checkpoint_url(self, base: str) -> str:
        return f"{self.server.url}/v1/checkpoint/{base}"

    async def handle(self, request: Request):
        if not request.path.startswith("/v1/checkpoint/") or request.path.endswith("/latest"):
            await send(request, answer(404, b'{"detail": "nothing here"}'))
            return None
        mode = self.mode
        if mode == "hang up":
            self.connections.append({"mode": mode})
            return False
        if mode == "drip":
            await send(request, head(200, 10 * MB, "content-type: application/octet-stream\r\n"))
            streamed = await drip(request, SECRET * 1000, interval=5.0, max_seconds=300.0)
            declared = "10 MB"
        else:
            declared = "9 GB" if next(self.floods) % 2 == 0 else "none (until close)"
            await send(request, head(200, 9 * GB if declared == "9 GB" else None,
                                     "content-type: application/octet-stream\r\n"))
            await send(request, SECRET)
            streamed = await flood(request, 300 * MB)
            streamed.sent += len(SECRET)
        self.connections.append({"mode": mode, "declared": declared, "sent_bytes": streamed.sent,
                                 "held_s": round(streamed.seconds, 2), "miner_hung_up": streamed.cut_off})
        return False


@dataclass
class Answer:
    round_index: int
    item: int
    attack: str
    uid: int
    status: int | None  # None: no answer (connection failed or the deadline passed)
    detail: str
    seconds: float
    block_before: int
    block_after: int
    body_bytes: int = 0


class PermitAttacker:
    def __init__(self, keypair, netuid: int, miners: list[MinerEndpoint], workload: Workload, round_blocks: int,
                 train_blocks: int, block_time: float, sim_url: str, block_hash, axon: AttackerAxon,
                 items: frozenset[int] = frozenset({3, 6, 7})):
        """`block_hash(block)`: the chain's hash of a block (an awaitable, through the SDK);
        `axon`: the attacker's server at its address published on the chain; `items`: which of
        its attacks to make (3, 6, 7)."""
        self.keypair = keypair
        self.items = items
        self.netuid = netuid
        self.miners = miners
        self.workload = workload
        self.round_blocks, self.train_blocks = round_blocks, train_blocks
        self.block_time = block_time
        self.sim_url = sim_url
        self.block_hash = block_hash
        self.axon = axon
        self.nothing_port = free_port()
        self.answers: list[Answer] = []
        self.http = httpx.AsyncClient(timeout=REQUEST_DEADLINE, limits=httpx.Limits(max_connections=32))

    async def close(self) -> None:
        await self.http.aclose()

    async def block(self) -> int:
        while True:
            try:
                response = await self.http.get(f"{self.sim_url}/health", timeout=2.0)
                return int(response.json()["block"])
            except (httpx.HTTPError, ValueError, KeyError):
                await asyncio.sleep(0.2)

    async def until_block(self, block: int) -> int:
        """The chain's block once it is `block` or later; polled fast only in the last block, to
        be first at a round's start without loading the chain node the rest of the time."""
        while (current := await self.block()) < block:
            await asyncio.sleep(0.02 if block - current <= 1 else self.block_time)
        return current

    # --- requests ----------------------------------------------------------------------------
    async def request(self, round_index: int, item: int, attack: str, miner: MinerEndpoint, method: str,
                      path: str, body: bytes = b"", deadline: float = REQUEST_DEADLINE) -> Answer:
        headers = sign_request(self.keypair, method=method, path=path, body=body, receiver_ss58=miner.hotkey)
        if body:
            headers["content-type"] = "application/json"
        before, t0 = await self.block(), time.monotonic()
        status, detail, size = None, "", 0
        try:
            fetched = await fetch_bounded(self.http, method, miner.url + path, headers=headers, content=body or None,
                                          limit=ANSWER_LIMIT, deadline_s=deadline)
            status, size = fetched.status, fetched.size
            detail = fetched.detail(1000) if fetched.status != 200 or path.startswith("/v1/commitment") \
                else f"{fetched.size} bytes"
        except (httpx.HTTPError, FetchError) as exc:
            detail = f"{type(exc).__name__}: {exc}"[:300]
        answer = Answer(round_index, item, attack, miner.uid, status, detail, round(time.monotonic() - t0, 3),
                        before, await self.block(), size)
        self.answers.append(answer)
        return answer

    def order(self, window: RoundWindow, seed: str, miner: MinerEndpoint, deadline_unix: float,
              checkpoint_url: str | None = None) -> TrainRequest:
        """An order right in every field the miner checks against the chain and the shared data,
        for a base no one holds, served (by default) at the attacker's own published address."""
        recipe = self.workload.recipe
        base = os.urandom(32).hex()
        pages = assigned_pages(bytes.fromhex(seed), miner.hotkey, self.workload.pages.train_ids, recipe.pages_per_miner)
        return TrainRequest(netuid=self.netuid, round_index=window.index, round_block=window.start_block, seed=seed,
                            base_checkpoint=base, dataset=self.workload.dataset_id,
                            model_preset=self.workload.preset_name,
                            checkpoint_url=checkpoint_url or self.axon.checkpoint_url(base), pages=pages,
                            recipe=recipe, deadline_block=window.deadline_block, deadline_unix=deadline_unix)

    async def send_order(self, round_index: int, item: int, attack: str, miner: MinerEndpoint,
                         order: TrainRequest) -> Answer:
        return await self.request(round_index, item, attack, miner, "POST", "/v1/train",
                                  order.model_dump_json().encode())

    def window(self, index: int) -> RoundWindow:
        return round_at(index * self.round_blocks, self.round_blocks, self.train_blocks)

    # --- one round ---------------------------------------------------------------------------
    async def attack_round(self, window: RoundWindow) -> None:
        block = await self.until_block(window.seed_block)  # as early as any order may come: racing the lead's
        if block >= window.deadline_block:
            return  # joined too late for this round
        seed = round_seed(await self.block_hash(window.seed_block), window.index).hex()
        deadline_unix = time.time() + (window.deadline_block - block) * self.block_time
        self.axon.mode = AttackerAxon.MODES[window.index % len(AttackerAxon.MODES)]
        if 7 in self.items:
            await asyncio.gather(*(self.send_order(window.index, 7, f"own axon: checkpoint {self.axon.mode}", m,
                                                   self.order(window, seed, m, deadline_unix)) for m in self.miners))
            await asyncio.gather(*(self.foreign_orders(window, seed, m, deadline_unix) for m in self.miners))
        if 3 in self.items:
            await asyncio.gather(*(self.forged_orders(window, seed, m, deadline_unix) for m in self.miners))
        if 6 not in self.items:
            return
        await asyncio.gather(*(self.ask_early(window, m) for m in self.miners))
        await self.until_block(window.eval_block + 1)
        await asyncio.gather(*(self.request(window.index, 6, "contribution after the reveal", m, "GET",
                                            f"/v1/contribution?round={window.index}") for m in self.miners))

    async def foreign_orders(self, window: RoundWindow, seed: str, miner: MinerEndpoint, deadline_unix: float) -> None:
        """Item 7: checkpoint URLs that are not the sender's published address."""
        urls = {"foreign URL: a port with nothing": f"http://127.0.0.1:{self.nothing_port}/v1/checkpoint/",
                "foreign URL: another loopback server": f"{self.sim_url}/health?"}
        for attack, prefix in urls.items():
            order = self.order(window, seed, miner, deadline_unix)
            order = order.model_copy(update={"checkpoint_url": prefix + order.base_checkpoint})
            await self.send_order(window.index, 7, attack, miner, order)

    async def forged_orders(self, window: RoundWindow, seed: str, miner: MinerEndpoint, deadline_unix: float) -> None:
        """Item 3: signed orders for a round that is not the open one, or whose deadline passed."""
        valid = self.order(window, seed, miner, deadline_unix)
        previous, following = self.window(window.index - 1), self.window(window.index + 1)
        forged = {
            "wrong round (off the schedule)": valid.model_copy(update={"round_index": window.index + 3}),
            "deadline already passed": valid.model_copy(update={"deadline_unix": time.time() - 5.0}),
            "a round that is not open (the previous one)": valid.model_copy(update={
                "round_index": previous.index, "round_block": previous.start_block,
                "deadline_block": previous.deadline_block}),
            "early order for the next round": valid.model_copy(update={
                "round_index": following.index, "round_block": following.start_block,
                "deadline_block": following.deadline_block,
                "deadline_unix": deadline_unix + self.round_blocks * self.block_time}),
        }
        for attack, order in forged.items():
            await self.send_order(window.index, 3, attack, miner, order)

    async def ask_early(self, window: RoundWindow, miner: MinerEndpoint) -> None:
        """Item 6: the round's bytes before its eval block. The commitment is long-polled as a
        validator does; from the moment it exists (the bytes are on the miner's disk) the bytes
        are asked for every 0.1 s until the eval block, before it about once a second."""
        path = f"/v1/contribution?round={window.index}"
        committed = False
        while await self.block() < window.eval_block:
            if not committed:
                commitment = await self.request(window.index, 6, "commitment before the reveal", miner, "GET",
                                                f"/v1/commitment?round={window.index}&wait=1.00")
                committed = commitment.status == 200
            await self.request(window.index, 6, "contribution before the reveal", miner, "GET", path)
            await asyncio.sleep(0.1 if committed else 0.5)

    async def run(self, first_round: int, stop: asyncio.Event) -> None:
        index = first_round
        while not stop.is_set():
            try:
                await self.attack_round(self.window(index))
            except Exception as exc:  # the attacker's own failure must not end the campaign
                logger.exception("attacker: round {} failed: {}", index, exc)
            index += 1
