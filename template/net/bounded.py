"""Reading what a peer sends under a byte limit, so an oversized answer never costs memory."""


async def read_bounded(response, limit: int) -> bytes | None:
    """The body of a streamed httpx response, or None once it passes `limit` bytes."""
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
