"""Fetching a validator's latest checkpoint over HTTP, bounded in size and checked by hash."""
from __future__ import annotations

import httpx
import torch

from protocol.limits import MAX_CHECKPOINT_BYTES
from protocol.messages import CheckpointInfo
from template.training.checkpoint import load_checkpoint_bytes, state_hash
from template.utils.net import read_bounded


class CheckpointFetchError(RuntimeError):
    pass


async def fetch_latest_checkpoint(base_url: str, held: str, timeout: float = 60.0
                                  ) -> tuple[CheckpointInfo, dict[str, torch.Tensor] | None]:
    """The validator's announced latest checkpoint, and its tensors unless it is `held` (None)."""
    async with httpx.AsyncClient(timeout=timeout) as http:
        try:
            info = CheckpointInfo.model_validate((await http.get(f"{base_url}/v1/checkpoint/latest")).json())
        except ValueError as exc:  # not JSON, or not a CheckpointInfo
            raise CheckpointFetchError(f"unusable checkpoint announcement: {exc}"[:300]) from exc
        if info.sha256 == held:
            return info, None
        async with http.stream("GET", f"{base_url}/v1/checkpoint/{info.sha256}") as response:
            if response.status_code != 200:
                raise CheckpointFetchError(f"answered {response.status_code} for checkpoint {info.sha256[:12]}")
            body = await read_bounded(response, MAX_CHECKPOINT_BYTES)
    if body is None:
        raise CheckpointFetchError(f"checkpoint exceeds {MAX_CHECKPOINT_BYTES} bytes")
    state = load_checkpoint_bytes(body)
    if state_hash(state) != info.sha256:
        raise CheckpointFetchError(f"checkpoint does not match its announced hash {info.sha256[:12]}")
    return info, state
