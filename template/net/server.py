"""Running a FastAPI app for a neuron, and the small pieces every endpoint shares."""
from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import HTTPException, Request

from protocol.auth import Rejection, RequestVerifier


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 past `limit` bytes (checked while streaming)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, "content-length is not a number")
        if int(declared) > limit:
            raise HTTPException(413, f"body of {declared} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def request_target(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def authenticate(verifier: RequestVerifier, request: Request, body: bytes) -> str:
    try:
        return verifier.verify(request.headers, body, method=request.method, path=request_target(request))
    except Rejection as exc:
        raise HTTPException(exc.status, exc.reason) from exc


class BackgroundServer:
    """uvicorn in a daemon thread, for neurons whose main thread runs something else."""

    def __init__(self, app, host: str, port: int):
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, name=f"http:{port}", daemon=True)

    def start(self, timeout: float = 20.0) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("HTTP server failed to start (port in use?)")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
