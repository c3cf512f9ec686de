"""The miner's HTTP API: /v1/train, /v1/commitment, /v1/contribution, /v1/info.

Only registered validators holding a permit may ask for work or fetch contributions; every
refusal is a 4xx with the reason (a failed round's with a generic one). A contribution is
committed before the round's deadline and revealed after it.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from loguru import logger
from pydantic import ValidationError

from protocol.auth import RequestVerifier
from protocol.limits import MAX_ROUND_OR_BLOCK, MAX_TRAIN_REQUEST_BYTES
from protocol.messages import InfoResponse, TrainAccepted, TrainRequest
from template.net.server import authenticate, read_body
from template.miner.reveal import RevealClock
from template.miner.round_log import RoundLog
from template.miner.worker import MinerWorker


def create_miner_app(worker: MinerWorker, verifier: RequestVerifier, netuid: int,
                     check_assignment: Callable[[TrainRequest, str], Awaitable[str | None]], info: InfoResponse,
                     reveal: RevealClock, priority_of: Callable[[str], float] = lambda hotkey: 0.0) -> FastAPI:
    """`check_assignment(order, sender)`: why the order cannot be trained, or None.
    `priority_of(sender)`: the weight of a sender's work order (its stake); a round's order is
    replaced only by one with a higher priority. Orders taken and refused go to the worker's
    round log."""
    app = FastAPI(title="deai miner", version=info.version)
    round_log: RoundLog = worker.round_log

    @app.post("/v1/train", status_code=202)
    async def train(request: Request) -> TrainAccepted:
        order: TrainRequest | None = None
        try:
            body = await read_body(request, MAX_TRAIN_REQUEST_BYTES)
            sender = authenticate(verifier, request, body)
            try:
                order = TrainRequest.model_validate_json(body)
            except ValidationError as exc:
                raise HTTPException(400, f"invalid train request: {_first_error(exc)}") from exc
            if order.netuid != netuid:
                raise HTTPException(400, f"wrong subnet: this miner serves netuid {netuid}, got {order.netuid}")
            problem = await check_assignment(order, sender)
            if problem is not None:
                raise HTTPException(409, problem)
        except HTTPException as exc:
            round_log.order_refused(order.round_index if order else None, exc.status_code, str(exc.detail))
            raise
        status = worker.submit(order, priority_of(sender))
        if status == "accepted":
            round_log.order_accepted(order.round_index)
        return TrainAccepted(round_index=order.round_index, status=status)

    async def finished(round: int, wait: float) -> None:
        """Long-poll up to `wait` seconds (at most 10) for the round's work to finish."""
        waited_until = time.monotonic() + min(max(wait, 0.0), 10.0)
        while not worker.outbox.has(round) and time.monotonic() < waited_until:
            outcome = worker.outcome(round)
            if outcome is None or outcome.status == "failed":
                break
            await asyncio.sleep(0.05)

    def not_finished(round: int) -> Response:
        outcome = worker.outcome(round)
        if outcome is None:
            raise HTTPException(404, f"no work for round {round}")
        if outcome.status == "failed":
            # The cause may quote a third party (the server at the order's checkpoint URL): it
            # stays in this miner's log, the caller gets a generic reason.
            logger.debug("round {}: answering 410 for a failed round: {}", round, outcome.detail)
            raise HTTPException(410, f"round {round} failed on this miner")
        return JSONResponse({"round_index": round, "status": outcome.status}, status_code=202)

    @app.get("/v1/commitment")
    async def commitment(request: Request, round: int = Query(ge=0, le=MAX_ROUND_OR_BLOCK),
                         wait: float = 0.0) -> Response:
        """The signed hash of the round's contribution, the moment it is done (the validator's
        long-poll sees true finishing order: it decides who copied whom)."""
        authenticate(verifier, request, b"")
        await finished(round, wait)
        found = worker.outbox.commitment(round)
        if found is None:
            return not_finished(round)
        return Response(found.model_dump_json(), media_type="application/json")

    @app.get("/v1/contribution")
    async def contribution(request: Request, round: int = Query(ge=0, le=MAX_ROUND_OR_BLOCK)) -> Response:
        """The bytes, only once the round's commitments are closed (`RevealClock`)."""
        authenticate(verifier, request, b"")
        if not worker.outbox.has(round):
            return not_finished(round)
        if not await reveal.revealed(round):
            raise HTTPException(425, f"round {round}'s contribution is given out from block "
                                     f"{reveal.reveal_block(round)} on; before it, only its commitment")
        body = worker.outbox.body(round)
        if body is None:  # pruned between the two reads
            raise HTTPException(404, f"no work for round {round}")
        return Response(body, media_type="application/octet-stream")

    @app.get("/v1/info")
    async def get_info() -> InfoResponse:
        return info

    return app


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "body"
    return f"{where}: {err.get('msg')}"
