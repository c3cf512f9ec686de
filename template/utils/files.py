"""Writing files so that a kill -9 at any moment leaves the old content or the new, never half."""
from __future__ import annotations

import os
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` beside `path`, then rename it over `path` (a rename is atomic on one filesystem)."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)
