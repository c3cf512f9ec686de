"""The hostile miner of the campaign: a raw HTTP server behind a registered miner's axon that
answers the validator's calls with one attack per round (items 1, 4 and 5), and records what
each cost the validator (bytes it took, seconds it stayed).

Its first /v1/info answers are floods, so the validator gives it no work until it answers one
properly (the validator asks once more every round until then). After that, each round it is
given takes the next attack of `SCHEDULE`: a malformed payload of the next class (item 1), a
contribution dripped one byte every 5 s (item 4), or huge error bodies on /v1/train and
/v1/commitment and then a contribution with a 40 MB header (item 5)."""
from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field

from loguru import logger

from bench.hostile_attacks import MALFORMED, huge_header, nan_contribution
from bench.raw_http import RawServer, Request, answer, drip, flood, head, send
from protocol.auth import sign_commitment
from protocol.messages import InfoResponse, TrainRequest
from template.net.checkpoint_client import download_checkpoint

MB = 1024 * 1024
DECLARED_FLOOD = 400 * MB  # what a flood announces (or streams until the caller hangs up)
STREAMED_FLOOD = 300 * MB
DRIP_INTERVAL = 5.0
DRIP_MAX_SECONDS = 120.0  # the hostile miner's own bound on one dripped answer


@dataclass(frozen=True)
class Attack:
    item: int
    name: str
    payload_class: str = ""
    payload: bytes = b""


def schedule() -> list[Attack]:
    """The attacks in the order the hostile miner's rounds take them (cycled when exhausted)."""
    payloads = [Attack(1, f"payload: {name}", cls, data) for cls, name, data in MALFORMED]
    floods = Attack(5, "huge error bodies, then a 40 MB header")
    return [payloads[0], payloads[1], floods, payloads[2], Attack(4, "drip contribution body"), *payloads[3:6],
            Attack(1, "payload: NaN values", "NaN values"), payloads[6], Attack(4, "drip contribution headers"),
            *payloads[7:10], floods, *payloads[10:]]


INFO_FLOODS = ["info: 200 declaring 400 MB", "info: 200 streamed until close"]


@dataclass
class HostileRound:
    """What one round's attack did to the validator."""

    round_index: int
    attack: Attack
    order: TrainRequest | None = None
    body: bytes | None = None
    events: list[dict] = field(default_factory=list)


class HostileMiner:
    def __init__(self, keypair, netuid: int, preset: str, items: frozenset[int] = frozenset({1, 4, 5}),
                 capacity_gb: float = 8.0):
        """`items`: which of its attacks to make (1, 4, 5); the /v1/info floods are item 5's."""
        self.keypair = keypair
        self.netuid = netuid
        self.info = InfoResponse(hotkey=keypair.ss58_address, version="2.0", device="cpu", capacity_gb=capacity_gb,
                                 model_preset=preset, behaviour="hostile").model_dump_json().encode()
        self.attacks = [a for a in schedule() if a.item in items]
        self.info_floods = INFO_FLOODS if 5 in items else []
        self.rounds: dict[int, HostileRound] = {}
        self.info_events: list[dict] = []
        self.lock = threading.Lock()
        self.server = RawServer(self.handle)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> "HostileMiner":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def round(self, index: int) -> HostileRound:
        with self.lock:
            if index not in self.rounds:
                attack = self.attacks[len(self.rounds) % len(self.attacks)]
                self.rounds[index] = HostileRound(index, attack)
                logger.info("hostile miner: round {} gets {}", index, attack.name)
            return self.rounds[index]

    # --- HTTP --------------------------------------------------------------------------------
    async def handle(self, request: Request):
        try:
            if request.path == "/v1/info":
                return await self.on_info(request)
            round_index = int(request.query.get("round", "-1"))
            if request.path == "/v1/train" and request.method == "POST":
                return await self.on_train(request)
            if request.path == "/v1/commitment" and round_index >= 0:
                return await self.on_commitment(request, self.round(round_index))
            if request.path == "/v1/contribution" and round_index >= 0:
                return await self.on_contribution(request, self.round(round_index))
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # the hostile miner's own bug: log it, answer something, go on
            logger.exception("hostile miner: {} {} failed: {}", request.method, request.path, exc)
            return False
        await send(request, answer(404, b'{"detail": "not here"}'))

    async def on_info(self, request: Request):
        if len(self.info_events) >= len(self.info_floods):
            await send(request, answer(200, self.info))
            return None
        name = self.info_floods[len(self.info_events)]
        if "declaring" in name:
            await send(request, head(200, DECLARED_FLOOD, "content-type: application/json\r\n"))
            streamed = await flood(request, DECLARED_FLOOD)
        else:
            await send(request, head(200, None, "content-type: application/json\r\n"))
            streamed = await flood(request, STREAMED_FLOOD)
        self.info_events.append({"item": 5, "attack": name, "sent_bytes": streamed.sent,
                                 "caller_hung_up": streamed.cut_off, "seconds": round(streamed.seconds, 3)})
        return False

    async def on_train(self, request: Request):
        try:
            order = TrainRequest.model_validate_json(request.body)
        except ValueError:
            await send(request, answer(400, b'{"detail": "not an order"}'))
            return None
        hostile = self.round(order.round_index)
        hostile.order = order
        if hostile.attack.item == 5:
            await send(request, head(500, None, "content-type: application/json\r\n"))
            streamed = await flood(request, STREAMED_FLOOD)
            hostile.events.append({"endpoint": "/v1/train", "attack": "500 streamed until close",
                                   "sent_bytes": streamed.sent, "caller_hung_up": streamed.cut_off,
                                   "seconds": round(streamed.seconds, 3)})
            return False
        body = f'{{"round_index": {order.round_index}, "status": "accepted"}}'.encode()
        await send(request, answer(202, body))
        return None

    async def on_commitment(self, request: Request, hostile: HostileRound):
        if hostile.attack.item == 5 and not any(e["endpoint"] == "/v1/commitment" for e in hostile.events):
            await send(request, head(503, DECLARED_FLOOD, "content-type: application/json\r\n"))
            streamed = await flood(request, DECLARED_FLOOD)
            hostile.events.append({"endpoint": "/v1/commitment", "attack": "503 declaring 400 MB",
                                   "sent_bytes": streamed.sent, "caller_hung_up": streamed.cut_off,
                                   "seconds": round(streamed.seconds, 3)})
            return False
        body = await self.contribution_body(hostile)
        if body is None:
            await send(request, answer(404, b'{"detail": "no work"}'))
            return None
        commitment = sign_commitment(self.keypair, self.netuid, hostile.round_index, body)
        await send(request, answer(200, commitment.model_dump_json().encode()))
        hostile.events.append({"endpoint": "/v1/commitment", "attack": "signed commitment",
                               "size_bytes": len(body)})
        return None

    async def contribution_body(self, hostile: HostileRound) -> bytes | None:
        if hostile.body is not None:
            return hostile.body
        attack = hostile.attack
        if attack.item == 1 and attack.payload:
            hostile.body = attack.payload
        elif attack.item == 1:  # NaN values in an otherwise right contribution for the order
            if hostile.order is None:
                return None
            order = hostile.order
            base = await download_checkpoint(order.checkpoint_url, order.base_checkpoint, timeout=30.0)
            hostile.body = await asyncio.to_thread(nan_contribution, order, self.keypair.ss58_address, base)
        elif attack.item == 5:
            hostile.body = await asyncio.to_thread(huge_header)
        else:  # a drip: what is committed does not matter, it never arrives whole
            hostile.body = os.urandom(4096)
        return hostile.body

    async def on_contribution(self, request: Request, hostile: HostileRound):
        body = await self.contribution_body(hostile)
        if body is None:
            await send(request, answer(404, b'{"detail": "no work"}'))
            return None
        t0 = time.monotonic()
        if hostile.attack.item == 4:
            if "headers" in hostile.attack.name:
                streamed = await drip(request, head(200, len(body)) + body, DRIP_INTERVAL, DRIP_MAX_SECONDS)
            else:
                await send(request, head(200, len(body), "content-type: application/octet-stream\r\n"))
                streamed = await drip(request, body, DRIP_INTERVAL, DRIP_MAX_SECONDS)
            hostile.events.append({"endpoint": "/v1/contribution", "attack": hostile.attack.name,
                                   "sent_bytes": streamed.sent, "of_bytes": len(body),
                                   "caller_hung_up": streamed.cut_off, "seconds": round(streamed.seconds, 3)})
            return False
        await send(request, answer(200, body, "application/octet-stream"))
        hostile.events.append({"endpoint": "/v1/contribution", "attack": hostile.attack.name,
                               "sent_bytes": len(body), "of_bytes": len(body),
                               "seconds": round(time.monotonic() - t0, 3)})
        return None
