"""The miner's base checkpoints by hash: fetched over HTTP, verified, kept for a few rounds."""
from __future__ import annotations

import asyncio
from pathlib import Path

import torch

from template.net.checkpoint_client import download_checkpoint
from template.training.checkpoint import load_checkpoint, save_checkpoint


class CheckpointCache:
    """Base checkpoints by hash; fetched over HTTP and verified before use."""

    def __init__(self, directory: Path, timeout: float = 60.0):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout

    def get(self, url: str, expected_hash: str) -> dict[str, torch.Tensor]:
        path = self.directory / f"{expected_hash}.safetensors"
        if path.exists():
            return load_checkpoint(path)
        state = asyncio.run(download_checkpoint(url, expected_hash, self.timeout))  # the worker thread has no loop
        save_checkpoint(path, state)
        self._prune(keep=path)
        return state

    def _prune(self, keep: Path, max_files: int = 3) -> None:
        files = sorted(self.directory.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        for old in files[:-max_files]:
            if old != keep:
                old.unlink(missing_ok=True)
