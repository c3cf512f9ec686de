"""Every outbound request under a byte limit and one wall-clock deadline, so neither an oversized
nor a slow answer from a peer costs more than the caller allowed.

httpx's own timeout applies to each read: a peer sending one byte just inside it never trips it.
Here the deadline covers the whole exchange (pool wait, connect, headers, body), bodies are
streamed and counted as they arrive, and an error answer is read only as far as its first few KB.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import BinaryIO

import httpx

# What is kept of an answer other than the expected one (enough for its "detail"); the rest of it
# is never read: the connection is closed instead.
ERROR_BODY_BYTES = 4 * 1024


class FetchError(Exception):
    """An answer that broke the caller's limits (transport failures stay httpx.HTTPError)."""


class DeadlineExceeded(FetchError):
    pass


class BodyTooLarge(FetchError):
    pass


@dataclass(frozen=True)
class Fetched:
    status: int
    headers: httpx.Headers
    body: bytes  # the whole body for the expected status (empty when it went to a sink), else its start
    size: int  # body bytes read

    def json(self):
        return json.loads(self.body)

    def detail(self, max_chars: int = 300) -> str:
        """What an error answer says: its JSON "detail", else its text, shortened."""
        text = self.body.decode("utf-8", errors="replace")
        try:
            found = json.loads(self.body)
            if isinstance(found, dict) and "detail" in found:
                text = str(found["detail"])
        except ValueError:
            pass
        return text[:max_chars]


async def fetch_bounded(client: httpx.AsyncClient, method: str, url: str, *, limit: int, deadline_s: float,
                        headers: dict[str, str] | None = None, content: bytes | None = None, expect: int = 200,
                        sink: BinaryIO | None = None) -> Fetched:
    """One request whose whole exchange ends within `deadline_s` seconds (else DeadlineExceeded).
    An answer with status `expect` may carry at most `limit` body bytes (else BodyTooLarge), kept
    in memory or, with `sink`, written to it as they arrive; any other status keeps at most
    ERROR_BODY_BYTES of its body. Transport failures raise httpx.HTTPError."""
    try:
        return await asyncio.wait_for(_exchange(client, method, url, limit, headers, content, expect, sink),
                                      deadline_s)
    except asyncio.TimeoutError as exc:  # TimeoutError itself from Python 3.11 on
        raise DeadlineExceeded(f"no complete answer within {deadline_s:.1f} s") from exc


async def _exchange(client, method, url, limit, headers, content, expect, sink) -> Fetched:
    # Bodies are counted as sent: a compressed answer could expand past any limit in one chunk.
    request_headers = {**(headers or {}), "accept-encoding": "identity"}
    async with client.stream(method, url, headers=request_headers, content=content) as response:
        expected = response.status_code == expect
        if expected:
            if response.headers.get("content-encoding", "identity").lower() != "identity":
                raise FetchError("the answer is content-encoded; only identity is accepted")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(f"the answer declares {declared} bytes, more than the limit of {limit}")
        cap = limit if expected else ERROR_BODY_BYTES
        chunks, size = [], 0
        async for chunk in response.aiter_raw():
            if not expected:
                chunks.append(chunk[:cap - size])
                size += len(chunks[-1])
                if size >= cap:
                    break  # the rest of an error answer is not worth reading
                continue
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"the answer exceeds the limit of {limit} bytes")
            if sink is not None:
                sink.write(chunk)
            else:
                chunks.append(chunk)
        return Fetched(response.status_code, response.headers, b"".join(chunks), size)
