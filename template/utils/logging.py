"""loguru set-up shared by every neuron: one readable line per event, a file copy per neuron."""
from __future__ import annotations

import sys
from pathlib import Path

from loguru import logger


def setup_logging(name: str, level: str, log_dir: Path | None = None) -> None:
    """`level`: INFO, DEBUG or TRACE on stderr; the file copy keeps DEBUG or finer."""
    logger.remove()
    fmt = "<green>{time:HH:mm:ss}</green> <cyan>" + name + "</cyan> <level>{level: <7}</level> {message}"
    logger.add(sys.stderr, level=level, format=fmt)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        logger.add(log_dir / f"{name.replace(':', '-')}.log", level="TRACE" if level == "TRACE" else "DEBUG",
                   rotation="50 MB", retention=3)
