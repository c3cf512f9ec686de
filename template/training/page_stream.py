"""Pages from a streamed dataset: rows are tokenised a batch at a time and appended to a page
file on disk (int32), so memory stays bounded whatever the dataset's size; the store then maps
that file. Every node streaming the same dataset with the same tokenizer writes the same file
and gets the same digest (`PageStore.digest`)."""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from loguru import logger
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from template.training.corpus import DOCUMENT_SEPARATOR
from template.training.pages import PAGES_DIR, PageStore, make_page_store
from template.training.text_stream import DatasetSource, stream_documents
from template.training.tokenizer import build_tokenizer, tokenizer_digest

DEFAULT_MAX_TOKENS = 100_000_000  # 400 MB of pages on disk; --data.max_tokens
BATCH_CHARS = 1_000_000  # text tokenised per call (the fast tokenizer runs a batch in parallel)
TOKENIZER_SAMPLE_CHARS = 8_000_000  # a preset's BPE is trained on the stream's first characters
PROGRESS_LOG_SECONDS = 15.0


def batched(documents: Iterable[str], chars: int = BATCH_CHARS) -> Iterator[list[str]]:
    batch, size = [], 0
    for doc in documents:
        batch.append(doc)
        size += len(doc)
        if size >= chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def sample_text(source: DatasetSource, chars: int = TOKENIZER_SAMPLE_CHARS) -> str:
    """The stream's first `chars` characters, documents joined as the default corpus joins them."""
    parts, size = [], 0
    for doc in stream_documents(source):
        parts.append(doc[:chars - size])
        size += len(parts[-1])
        if size >= chars:
            break
    if not parts:
        raise ValueError(f"dataset {source} has no text")
    return DOCUMENT_SEPARATOR.join(parts)


class _Progress:
    """A tqdm bar on a terminal, and a log line with rates every PROGRESS_LOG_SECONDS."""

    def __init__(self, total_tokens: int, what: str):
        self.bar = tqdm(total=total_tokens, unit="tok", unit_scale=True, desc="pages", disable=not sys.stderr.isatty())
        self.what, self.total = what, total_tokens
        self.t0 = self.last = time.perf_counter()
        self.tokens = self.chars = self.docs = 0

    def add(self, tokens: int, chars: int, docs: int) -> None:
        self.tokens, self.chars, self.docs = self.tokens + tokens, self.chars + chars, self.docs + docs
        self.bar.update(tokens)
        now = time.perf_counter()
        if now - self.last >= PROGRESS_LOG_SECONDS:
            self.last = now
            logger.info(f"pages: {self.tokens / 1e6:.1f}M of at most {self.total / 1e6:.0f}M tokens from {self.what}, "
                        f"{self.docs:,} documents, {self.chars / (now - self.t0) / 1e6:.2f} Mchar/s, "
                        f"{self.tokens / (now - self.t0) / 1e3:.0f}k tok/s")

    def close(self) -> float:
        self.bar.close()
        return time.perf_counter() - self.t0


def write_pages(documents: Iterable[str], tokenizer: PreTrainedTokenizerBase, page_len: int, max_tokens: int,
                vocab_size: int, path: Path, what: str = "the dataset") -> int:
    """Tokenise `documents` (an EOS after each) into whole pages of `page_len` appended to `path`
    as int32, up to `max_tokens`; the number of pages written."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token to separate documents")
    max_pages = max_tokens // page_len
    carry = np.zeros(0, dtype=np.int32)
    pages = 0
    progress = _Progress(max_pages * page_len, what)
    with open(path, "wb") as out:
        for batch in batched(documents):
            encoded = tokenizer(batch, add_special_tokens=False)["input_ids"]
            ids = np.fromiter((t for doc in encoded for t in (*doc, eos)), dtype=np.int64)
            if ids.size and int(ids.max()) >= vocab_size:
                raise ValueError(f"token id {int(ids.max())} outside vocab_size {vocab_size}")
            ids = np.concatenate([carry, ids.astype(np.int32)])
            whole = min(ids.size // page_len, max_pages - pages)
            out.write(ids[:whole * page_len].tobytes())
            pages += whole
            carry = ids[whole * page_len:]
            progress.add(whole * page_len, sum(map(len, batch)), len(batch))
            if pages >= max_pages:
                break
    seconds = progress.close()
    logger.info(f"pages: {pages:,} pages x {page_len} tokens ({pages * page_len / 1e6:.1f}M tokens) from {what}, "
                f"{progress.docs:,} documents, {progress.chars / 1e6:.1f}M chars in {seconds:.1f}s "
                f"({progress.tokens / max(seconds, 1e-9) / 1e3:.0f}k tok/s)")
    return pages


def read_pages(path: Path, page_len: int, rows: int = 4096) -> Iterator[torch.Tensor]:
    """The page file's rows, a block at a time, read (not mapped: the pages stay out of memory)."""
    with open(path, "rb") as handle:
        while block := handle.read(4 * page_len * rows):
            yield torch.from_numpy(np.frombuffer(bytearray(block), dtype=np.int32).reshape(-1, page_len))


def map_pages(path: Path, page_len: int) -> torch.Tensor:
    """A page file as an int32 [num_pages, page_len] tensor backed by the file (read lazily)."""
    pages = os.path.getsize(path) // (4 * page_len)
    array = np.memmap(path, dtype=np.int32, mode="c", shape=(pages, page_len))  # copy-on-write: never written back
    return torch.from_numpy(array)


def streamed_page_store(cache_dir: Path, source: DatasetSource, page_len: int, vocab_size: int,
                        heldout_fraction: float, max_tokens: int = DEFAULT_MAX_TOKENS,
                        tokenizer: PreTrainedTokenizerBase | None = None) -> PageStore:
    """Pages of `source`, cached under cache_dir/pages keyed by the dataset, the tokenizer and the
    page settings. Without `tokenizer`, a byte-level BPE of `vocab_size` is trained on the
    stream's first TOKENIZER_SAMPLE_CHARS characters (cached too)."""
    tok_key = tokenizer_digest(tokenizer) if tokenizer is not None else f"bpe-v{vocab_size}-s{TOKENIZER_SAMPLE_CHARS}"
    settings = json.dumps([source.identity(), tok_key, page_len, heldout_fraction, max_tokens])
    key = hashlib.sha256(settings.encode()).hexdigest()[:16]
    path = Path(cache_dir) / PAGES_DIR / f"stream-{key}-p{page_len}.int32"
    if not path.exists():
        if tokenizer is None:
            tokenizer = build_tokenizer(cache_dir, sample_text(source), vocab_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")  # per-process: neurons may race
        try:
            if write_pages(stream_documents(source), tokenizer, page_len, max_tokens, vocab_size, tmp, str(source)) == 0:
                raise ValueError(f"dataset {source} gives less than one page of {page_len} tokens")
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
    store = make_page_store(map_pages(path, page_len), heldout_fraction, read_pages(path, page_len))
    logger.info(f"pages: {store.num_pages:,} pages x {page_len} of {source} ({len(store.train_ids):,} train, "
                f"{len(store.heldout_ids):,} held-out), digest {store.digest} <- {path}")
    return store
