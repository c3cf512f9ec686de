"""Fetching checkpoints over HTTP (miners their base, followers the lead's latest), bounded in
size and checked by hash."""
from __future__ import annotations

import httpx
import torch

from protocol.limits import MAX_CHECKPOINT_BYTES
from protocol.messages import CheckpointInfo
from template.training.checkpoint import load_checkpoint_bytes, state_hash
from template.net.bounded import read_bounded


class CheckpointFetchError(RuntimeError):
    pass


MAX_ANNOUNCEMENT_BYTES = 64 * 1024


async def announced_checkpoint(base_url: str, timeout: float) -> CheckpointInfo:
    """What a validator announces at /v1/checkpoint/latest."""
    async with httpx.AsyncClient(timeout=timeout) as http:
        async with http.stream("GET", f"{base_url}/v1/checkpoint/latest") as response:
            if response.status_code != 200:
                raise CheckpointFetchError(f"answered {response.status_code} for its latest checkpoint")
            body = await read_bounded(response, MAX_ANNOUNCEMENT_BYTES)
    if body is None:
        raise CheckpointFetchError(f"checkpoint announcement exceeds {MAX_ANNOUNCEMENT_BYTES} bytes")
    try:
        return CheckpointInfo.model_validate_json(body)
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
    """The validator's announced latest checkpoint, and its tensors unless it is `held` (None)."""
    info = await announced_checkpoint(base_url, timeout)
    if info.sha256 == held:
        return info, None
    return info, await download_checkpoint(f"{base_url}/v1/checkpoint/{info.sha256}", info.sha256, timeout)


async def download_checkpoint(url: str, expected_hash: str, timeout: float = 60.0) -> dict[str, torch.Tensor]:
    """The checkpoint at `url`, which must hash to `expected_hash`."""
    async with httpx.AsyncClient(timeout=timeout) as http:
        async with http.stream("GET", url) as response:
            if response.status_code != 200:
                raise CheckpointFetchError(f"answered {response.status_code} for checkpoint {expected_hash[:12]}")
            body = await read_bounded(response, MAX_CHECKPOINT_BYTES)
    if body is None:
        raise CheckpointFetchError(f"checkpoint exceeds {MAX_CHECKPOINT_BYTES} bytes")
    state = load_checkpoint_bytes(body)
    if state_hash(state) != expected_hash:
        raise CheckpointFetchError(f"checkpoint does not match its announced hash {expected_hash[:12]}")
    return state
