"""A raw HTTP/1.1 peer on 127.0.0.1 for hostile benches: it answers however its handler writes
the bytes (dripped, flooded, lying about their length), in its own thread and event loop so a
slow answer never holds the caller's loop.

    with RawServer(handler) as server:        # handler(request) -> bool | None (False: close)
        ...                                   # server.url
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from template.utils.ports import free_port

CHUNK = b"x" * (64 * 1024)
MAX_REQUEST_BODY = 1024 * 1024  # what this peer reads of a request (the miner protocol's are ~10 KB)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def peer_gone(self) -> bool:
        """Whether the caller hung up (its side of the socket reached EOF, or the socket closed)."""
        return self.reader.at_eof() or self.writer.is_closing()


class RawServer:
    def __init__(self, handler, port: int | None = None):
        self.handler = handler
        self.port = port or free_port()
        self.loop = asyncio.new_event_loop()
        self.tasks: set[asyncio.Task] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"raw-http:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "RawServer":
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self.port), self.loop).result(10)
        return self

    def stop(self) -> None:
        async def shut():
            self.server.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def __enter__(self) -> "RawServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            while True:  # keep-alive: one request after another on the connection
                line = await reader.readline()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = min(int(headers.get("content-length", "0") or 0), MAX_REQUEST_BODY)
                body = await reader.readexactly(length)
                parts = urlsplit(target)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                request = Request(method, parts.path, query, headers, body, reader, writer)
                if await self.handler(request) is False:
                    return  # answered until close
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, ValueError):
            pass
        finally:
            self.tasks.discard(task)
            writer.close()


def head(status: int, length: int | None = None, extra: str = "") -> bytes:
    """A status line and headers; without `length` the body runs until the connection closes."""
    framing = f"content-length: {length}\r\n" if length is not None else "connection: close\r\n"
    return f"HTTP/1.1 {status} X\r\n{framing}{extra}\r\n".encode()


def answer(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    return head(status, len(body), f"content-type: {content_type}\r\n") + body


async def send(request: Request, data: bytes) -> None:
    request.writer.write(data)
    await request.writer.drain()


@dataclass
class Streamed:
    """What a dripped or flooded answer cost: bytes handed to the socket, seconds until the caller
    hung up (or the stream ended), and whether the caller hung up before the end."""

    sent: int = 0
    seconds: float = 0.0
    cut_off: bool = False


async def flood(request: Request, total: int) -> Streamed:
    """Up to `total` body bytes, as fast as the caller takes them, until it hangs up."""
    out, t0 = Streamed(), time.monotonic()
    try:
        while out.sent < total and not request.peer_gone():
            chunk = CHUNK[:total - out.sent]
            await send(request, chunk)
            out.sent += len(chunk)
    except ConnectionError:
        pass
    out.cut_off = out.sent < total
    out.seconds = time.monotonic() - t0
    return out


async def drip(request: Request, data: bytes, interval: float, max_seconds: float) -> Streamed:
    """`data` one byte every `interval` seconds, until the caller hangs up or `max_seconds`."""
    out, t0 = Streamed(), time.monotonic()
    try:
        for i in range(len(data)):
            if request.peer_gone() or time.monotonic() - t0 > max_seconds:
                break
            await send(request, data[i:i + 1])
            out.sent += 1
            await _sleep_unless_gone(request, interval)
    except ConnectionError:
        pass
    out.cut_off = out.sent < len(data)
    out.seconds = time.monotonic() - t0
    return out


async def _sleep_unless_gone(request: Request, seconds: float) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until and not request.peer_gone():
        await asyncio.sleep(min(0.1, until - time.monotonic()))
