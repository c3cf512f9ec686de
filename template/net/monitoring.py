"""`/health` and a Prometheus `/metrics` for every neuron's HTTP server.

Both need no auth and are cheap and bounded: /health is a few fields; /metrics renders this
neuron's own registry (fixed metric names; labels are route templates, HTTP statuses, round
phases, check names and the uids of the last round only). Each neuron has its own registry,
so several neurons in one process (tests) never mix their figures.

/health answers 200 while the chain was read successfully within `stale_after_s` seconds, else
503 (for docker's HEALTHCHECK, a load balancer or an alert): chain connected (last block and when),
the last round this neuron finished, and the block of the last weights it set (validators).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Info, ProcessCollector
from prometheus_client.exposition import generate_latest

from template.chain.neuron_chain import ChainRead


@dataclass(frozen=True)
class RoundMark:
    index: int
    at_unix: float | None  # None: known from the state on disk, not finished by this process


class Monitoring:
    """One neuron's health state and metric registry. Role code records rounds and weights;
    `chain_read` says when the chain last answered."""

    def __init__(self, role: str, chain_read: Callable[[], ChainRead | None], stale_after_s: float,
                 versions: dict[str, str | int]):
        self.role = role
        self.chain_read = chain_read
        self.stale_after_s = stale_after_s
        self.versions = versions
        self.started = time.time()
        self.last_round: RoundMark | None = None
        self.last_weights_block: int | None = None
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, cpu seconds, open fds
        Info("deai_build", "versions this neuron runs", registry=self.registry).info(
            {"role": role, **{key: str(value) for key, value in versions.items()}})
        self.requests = Counter("deai_http_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=self.registry)
        self.gauge("deai_chain_block", "last block read from the chain").set_function(
            lambda: self._chain_value(lambda read: read.block))
        self.gauge("deai_chain_seconds_since_read", "seconds since the chain last answered").set_function(
            lambda: self._chain_value(lambda read: time.time() - read.at_unix))
        self.gauge("deai_healthy", "1 while /health answers 200").set_function(lambda: float(self.healthy()))
        self.gauge("deai_last_round", "last round this neuron finished").set_function(
            lambda: float(self.last_round.index) if self.last_round else float("nan"))
        self.gauge("deai_last_weights_block", "block of the last weights this neuron set").set_function(
            lambda: float(self.last_weights_block) if self.last_weights_block is not None else float("nan"))

    def gauge(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, documentation, list(labels), registry=self.registry)

    def counter(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, documentation, list(labels), registry=self.registry)

    def round_done(self, index: int) -> None:
        self.last_round = RoundMark(index, time.time())

    def round_resumed(self, index: int) -> None:
        """The last round finished before a restart (read from the state on disk)."""
        self.last_round = RoundMark(index, None)

    def weights_set(self, block: int) -> None:
        self.last_weights_block = block

    def _chain_value(self, pick: Callable[[ChainRead], float]) -> float:
        read = self.chain_read()
        return float(pick(read)) if read is not None else float("nan")

    def healthy(self) -> bool:
        read = self.chain_read()
        return read is not None and time.time() - read.at_unix <= self.stale_after_s

    def health(self) -> tuple[int, dict]:
        read = self.chain_read()
        healthy = self.healthy()
        last_round = self.last_round
        body = {
            "status": "ok" if healthy else "unhealthy",
            "role": self.role,
            "chain": {"connected": healthy, "last_block": read.block if read else None,
                      "seconds_since_read": round(time.time() - read.at_unix, 3) if read else None,
                      "stale_after_s": self.stale_after_s},
            "last_round": None if last_round is None else {"index": last_round.index, "at_unix": last_round.at_unix},
            "last_weights_block": self.last_weights_block,
            "uptime_s": round(time.time() - self.started, 1),
            **self.versions,
        }
        return (200 if healthy else 503), body

    def metrics_text(self) -> bytes:
        return generate_latest(self.registry)


def install_monitoring(app: FastAPI, monitoring: Monitoring) -> FastAPI:
    """Add GET /health and GET /metrics to `app`, and count every request it answers."""

    @app.get("/health")
    async def health() -> JSONResponse:
        status, body = monitoring.health()
        return JSONResponse(body, status_code=status)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(monitoring.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(RequestCounter, counter=monitoring.requests)
    return app


class RequestCounter:
    """ASGI middleware: one count per answered request, labelled by the matched route's template
    (never the raw path, so the label set stays bounded) and the status sent."""

    def __init__(self, app, counter: Counter):
        self.app, self.counter = app, counter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def sending(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.counter.labels(route=route, status=str(status["code"])).inc()
