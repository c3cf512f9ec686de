"""The miner's base checkpoints by hash: fetched over HTTP, verified, kept for a few rounds."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import torch
from loguru import logger

from protocol.limits import MAX_CHECKPOINT_BYTES
from template.net.checkpoint_client import download_checkpoint
from template.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


STOP_POLL_SECONDS = 0.1


class DownloadStopped(RuntimeError):
    """The caller no longer wanted the checkpoint (its order was replaced)."""


async def unless_stopped(work: Awaitable, should_stop: Callable[[], bool]):
    """`work`'s result, unless `should_stop()` says so first (asked every STOP_POLL_SECONDS):
    then the work is cancelled and DownloadStopped raised."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            if should_stop():
                raise DownloadStopped("the order this download was for is no longer held")
            await asyncio.wait({task}, timeout=STOP_POLL_SECONDS)
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class CheckpointUnavailable(RuntimeError):
    """The base checkpoint could not be fetched and verified. Its message names only the hash:
    what the server at the order's URL answered is in the miner's log, never in a reply."""


class CheckpointCache:
    """Base checkpoints by hash; fetched over HTTP and verified before use."""

    def __init__(self, directory: Path, timeout: float = 120.0, max_bytes: int = MAX_CHECKPOINT_BYTES):
        """`timeout`: seconds one download may take in all; `max_bytes`: the largest accepted."""
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.max_bytes = max_bytes

    def get(self, url: str, expected_hash: str, timeout: float | None = None,
            should_stop: Callable[[], bool] = lambda: False, max_bytes: int | None = None
            ) -> dict[str, torch.Tensor]:
        """The checkpoint `expected_hash`, downloaded from `url` unless held. `timeout` (default the
        cache's) bounds the download, e.g. by the time left in the round; `should_stop` is asked
        every STOP_POLL_SECONDS and ends the download (CheckpointUnavailable) once it says so, e.g.
        when the order it is for was replaced; `max_bytes` caps the size below the cache's limit."""
        path = self.directory / f"{expected_hash}.safetensors"
        if path.exists():
            return load_checkpoint(path)
        seconds = self.timeout if timeout is None else max(0.0, min(timeout, self.timeout))
        limit = self.max_bytes if max_bytes is None else min(max_bytes, self.max_bytes)
        try:  # the worker thread has no loop
            state = asyncio.run(unless_stopped(download_checkpoint(url, expected_hash, seconds, limit), should_stop))
        except Exception as exc:  # whatever the URL's server did, the order's sender learns only this
            logger.warning("base checkpoint {} from {}: {}: {}", expected_hash[:12], url, type(exc).__name__, exc)
            raise CheckpointUnavailable(f"base checkpoint {expected_hash[:12]} could not be fetched and verified") \
                from exc
        save_checkpoint(path, state)
        self._prune(keep=path)
        return state

    def held(self, digest: str) -> dict[str, torch.Tensor] | None:
        """The checkpoint if this cache holds it intact; a damaged file is removed (None)."""
        path = self.directory / f"{digest}.safetensors"
        if not path.exists():
            return None
        try:
            return load_checkpoint(path)
        except (CheckpointError, OSError) as exc:
            logger.error("{} is damaged ({}); removed", path, exc)
            path.unlink(missing_ok=True)
            return None

    def put(self, digest: str, state: dict[str, torch.Tensor]) -> None:
        """Keep a checkpoint this miner verified itself (replayed to `digest`)."""
        path = self.directory / f"{digest}.safetensors"
        save_checkpoint(path, state)
        self._prune(keep=path)

    def size_of(self, digest: str) -> int:
        path = self.directory / f"{digest}.safetensors"
        return path.stat().st_size if path.exists() else 0

    def _prune(self, keep: Path, max_files: int = 3) -> None:
        files = sorted(self.directory.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        for old in files[:-max_files]:
            if old != keep:
                old.unlink(missing_ok=True)
