"""wandb for a neuron: online with WANDB_API_KEY, offline without it, nothing with --wandb.off."""
from __future__ import annotations

import os
from pathlib import Path

from loguru import logger


class WandbRun:
    def __init__(self, run=None):
        self._run = run

    @property
    def enabled(self) -> bool:
        return self._run is not None

    def log(self, metrics: dict, step: int | None = None) -> None:
        if self._run is None:
            return
        try:
            self._run.log(metrics, step=step)
        except Exception as exc:  # monitoring must never take a neuron down
            logger.warning("wandb log failed: {}", exc)

    def finish(self) -> None:
        if self._run is not None:
            try:
                self._run.finish()
            except Exception as exc:
                logger.warning("wandb finish failed: {}", exc)
            self._run = None


def open_run(off: bool, project: str, entity: str, name: str, group: str, config: dict,
             directory: Path) -> WandbRun:
    if off:
        return WandbRun()
    try:
        import wandb
    except ImportError:
        logger.warning("wandb is not installed; monitoring off")
        return WandbRun()
    mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        run = wandb.init(project=project, entity=entity or None, name=name, group=group, config=config,
                         dir=str(directory), mode=mode, reinit="finish_previous")
    except Exception as exc:
        logger.warning("wandb init failed ({}); monitoring off", exc)
        return WandbRun()
    logger.info("wandb run {} ({} mode, dir {})", name, mode, directory)
    return WandbRun(run)
