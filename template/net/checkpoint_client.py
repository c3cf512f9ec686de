"""Fetching checkpoints over HTTP (miners their base, followers the lead's latest), bounded in
size and time and checked by hash."""
from __future__ import annotations

import tempfile
from collections.abc import Callable

import httpx
import torch

from protocol.limits import MAX_CHECKPOINT_BYTES
from protocol.messages import CheckpointInfo
from template.net.bounded import BodyTooLarge, FetchError, fetch_bounded
from template.training.checkpoint import CheckpointError, load_checkpoint_bytes, state_hash


class CheckpointFetchError(RuntimeError):
    pass


MAX_ANNOUNCEMENT_BYTES = 64 * 1024
# The slowest transfer a follower waits for beyond its base timeout, so a large announced
# checkpoint still gets the time it needs while a dripping lead is cut off.
MIN_TRANSFER_BYTES_PER_S = 8 * 1024 * 1024


LATEST = "/v1/checkpoint/latest"


def round_base_path(round_index: int) -> str:
    """Where a lead announces the checkpoint it sent a round's miners to train from."""
    return f"/v1/rounds/{round_index}/base"


async def announced_checkpoint(base_url: str, timeout: float, path: str = LATEST) -> CheckpointInfo:
    """What a validator announces at `path` (its latest checkpoint, or a round's base), within
    `timeout` seconds in all."""
    async with httpx.AsyncClient(timeout=timeout) as http:
        try:
            fetched = await fetch_bounded(http, "GET", f"{base_url}{path}",
                                          limit=MAX_ANNOUNCEMENT_BYTES, deadline_s=timeout)
        except BodyTooLarge as exc:
            raise CheckpointFetchError(f"checkpoint announcement exceeds {MAX_ANNOUNCEMENT_BYTES} bytes") from exc
        except FetchError as exc:
            raise CheckpointFetchError(f"unusable checkpoint announcement: {exc}") from exc
    if fetched.status != 200:
        raise CheckpointFetchError(f"answered {fetched.status} for its latest checkpoint")
    try:
        return CheckpointInfo.model_validate_json(fetched.body)
    except ValueError as exc:  # not JSON, or not a CheckpointInfo
        raise CheckpointFetchError(f"unusable checkpoint announcement: {exc}"[:300]) from exc


async def probe_latest(base_url: str, timeout: float) -> CheckpointInfo | None:
    """The announcement, or None when the validator does not answer usably within `timeout`."""
    try:
        return await announced_checkpoint(base_url, timeout)
    except (CheckpointFetchError, httpx.HTTPError):
        return None


async def fetch_latest_checkpoint(base_url: str, held: str, timeout: float = 60.0
                                  ) -> tuple[CheckpointInfo, dict[str, torch.Tensor] | None]:
    """The validator's announced latest checkpoint, and its tensors unless it is `held` (None).
    The download may be no larger than announced."""
    return await fetch_announced_checkpoint(base_url, LATEST, lambda info: info.sha256 != held, timeout)


async def fetch_round_base(base_url: str, round_index: int, needed: Callable[[CheckpointInfo], bool],
                           timeout: float = 60.0) -> tuple[CheckpointInfo, dict[str, torch.Tensor] | None]:
    """The checkpoint a lead sent round `round_index`'s miners to train from, and its tensors
    when `needed(announcement)` (else None)."""
    return await fetch_announced_checkpoint(base_url, round_base_path(round_index), needed, timeout)


async def fetch_announced_checkpoint(base_url: str, path: str, needed: Callable[[CheckpointInfo], bool],
                                     timeout: float) -> tuple[CheckpointInfo, dict[str, torch.Tensor] | None]:
    info = await announced_checkpoint(base_url, timeout, path)
    if not needed(info):
        return info, None
    if not 0 < info.size_bytes <= MAX_CHECKPOINT_BYTES:
        raise CheckpointFetchError(f"announced checkpoint size {info.size_bytes} is not in 1..{MAX_CHECKPOINT_BYTES}")
    deadline = timeout + info.size_bytes / MIN_TRANSFER_BYTES_PER_S
    return info, await download_checkpoint(f"{base_url}/v1/checkpoint/{info.sha256}", info.sha256, deadline,
                                           max_bytes=info.size_bytes)


async def download_checkpoint(url: str, expected_hash: str, timeout: float = 60.0,
                              max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict[str, torch.Tensor]:
    """The checkpoint at `url`, which must hash to `expected_hash`, arrive within `timeout`
    seconds in all and be at most `max_bytes` (never more than MAX_CHECKPOINT_BYTES). The body is
    streamed to a temporary file, so memory holds it once, when it is parsed."""
    limit = min(max_bytes, MAX_CHECKPOINT_BYTES)
    with tempfile.TemporaryFile() as sink:
        async with httpx.AsyncClient(timeout=timeout) as http:
            try:
                fetched = await fetch_bounded(http, "GET", url, limit=limit, deadline_s=timeout, sink=sink)
            except BodyTooLarge as exc:
                raise CheckpointFetchError(f"checkpoint exceeds {limit} bytes") from exc
            except FetchError as exc:
                raise CheckpointFetchError(f"checkpoint {expected_hash[:12]}: {exc}") from exc
        if fetched.status != 200:
            raise CheckpointFetchError(f"answered {fetched.status} for checkpoint {expected_hash[:12]}")
        sink.seek(0)
        data = sink.read()
    try:
        state = load_checkpoint_bytes(data)
    except CheckpointError as exc:
        raise CheckpointFetchError(f"checkpoint {expected_hash[:12]} is not a valid checkpoint: {exc}") from exc
    del data
    if state_hash(state) != expected_hash:
        raise CheckpointFetchError(f"checkpoint does not match its announced hash {expected_hash[:12]}")
    return state
