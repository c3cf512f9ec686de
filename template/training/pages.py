"""Token pages: the corpus cut into fixed-size pages with a validator-only held-out split."""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from loguru import logger
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerBase

from template.training.corpus import load_corpus_text, text_digest
from template.training.tokenizer import build_tokenizer, tokenizer_digest

PAGES_DIR = Path("pages")
DEFAULT_HELDOUT_FRACTION = 0.08
_ENCODE_PIECE_CHARS = 64_000


@dataclass
class PageStore:
    """tokens[page_id] is one page; train_ids are assignable to miners, heldout_ids never are."""

    tokens: torch.Tensor  # [num_pages, page_len]: int64 in memory, or int32 mapped from a file (streamed)
    train_ids: list[int]
    heldout_ids: list[int]
    digest: str  # content hash of tokens + split; peers compare it before trusting page ids

    @property
    def num_pages(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def page_len(self) -> int:
        return int(self.tokens.shape[1])

    def pages(self, ids: list[int]) -> torch.Tensor:
        """The token rows for these page ids, in order: LongTensor[len(ids), page_len]."""
        return self.tokens[torch.as_tensor(ids, dtype=torch.long)].long()


def is_heldout(page_id: int, fraction: float) -> bool:
    """Deterministic page-level split, a function of the page id alone."""
    h = hashlib.sha256(f"deai/heldout/{page_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") < fraction * 2**64


def split_pages(num_pages: int, fraction: float) -> tuple[list[int], list[int]]:
    heldout = [i for i in range(num_pages) if is_heldout(i, fraction)]
    held = set(heldout)
    return [i for i in range(num_pages) if i not in held], heldout


def tokenize_to_pages(text: str, tokenizer: PreTrainedTokenizerBase, page_len: int) -> torch.Tensor:
    """One token stream over the whole text, cut into non-overlapping pages (tail dropped)."""
    lines = text.splitlines(keepends=True)
    pieces, buf, size = [], [], 0
    for line in lines:  # batches of whole lines let the fast tokenizer run them in parallel
        buf.append(line)
        size += len(line)
        if size >= _ENCODE_PIECE_CHARS:
            pieces.append("".join(buf))
            buf, size = [], 0
    if buf:
        pieces.append("".join(buf))
    ids: list[int] = []
    for encoded in tokenizer(pieces, add_special_tokens=False)["input_ids"]:
        ids.extend(encoded)
    num_pages = len(ids) // page_len
    if num_pages == 0:
        raise ValueError(f"text gives {len(ids)} tokens, fewer than one page of {page_len}")
    return torch.tensor(ids[: num_pages * page_len], dtype=torch.long).view(num_pages, page_len)


def _store_digest(shape: tuple[int, ...], row_blocks: Iterable[torch.Tensor], heldout_ids: list[int]) -> str:
    """sha256 of the shape, the tokens as int64 (read a block of rows at a time, so a large
    store is never copied whole) and the held-out ids."""
    h = hashlib.sha256()
    h.update(str(tuple(shape)).encode())
    for block in row_blocks:
        h.update(block.to(torch.int64).contiguous().numpy().tobytes())
    h.update(",".join(map(str, heldout_ids)).encode())
    return h.hexdigest()[:16]


def row_blocks(tokens: torch.Tensor, rows: int = 4096) -> Iterator[torch.Tensor]:
    for start in range(0, int(tokens.shape[0]), rows):
        yield tokens[start:start + rows]


def make_page_store(tokens: torch.Tensor, heldout_fraction: float,
                    blocks: Iterable[torch.Tensor] | None = None) -> PageStore:
    """`blocks`: the same rows read another way for the digest (a file-backed store reads its
    file rather than touching every mapped page)."""
    train_ids, heldout_ids = split_pages(int(tokens.shape[0]), heldout_fraction)
    if not train_ids or not heldout_ids:
        raise ValueError(f"{tokens.shape[0]} pages too few for a train/held-out split "
                         f"at fraction {heldout_fraction}")
    digest = _store_digest(tuple(tokens.shape), row_blocks(tokens) if blocks is None else blocks, heldout_ids)
    return PageStore(tokens, train_ids, heldout_ids, digest)


def build_page_store(cache_dir: Path, vocab_size: int, page_len: int,
                     heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
                     text: str | None = None,
                     tokenizer: PreTrainedTokenizerBase | None = None) -> PageStore:
    """Pages for `text` (default: the cached Shakespeare corpus), cached as safetensors.

    Without `tokenizer`, a byte-level BPE of `vocab_size` is trained on the text (and cached).
    """
    cache_dir = Path(cache_dir)
    if text is None:
        text = load_corpus_text(cache_dir)
    if tokenizer is None:
        tokenizer = build_tokenizer(cache_dir, text, vocab_size)
    key = f"{text_digest(text)}-{tokenizer_digest(tokenizer)}-p{page_len}-h{heldout_fraction:g}"
    path = cache_dir / PAGES_DIR / f"pages-{key}.safetensors"
    if path.exists():
        tokens = load_file(str(path))["tokens"].to(torch.long)
        store = make_page_store(tokens, heldout_fraction)
        logger.debug(f"pages: loaded {store.num_pages} pages x {page_len} from {path}")
        return store
    t0 = time.perf_counter()
    tokens = tokenize_to_pages(text, tokenizer, page_len)
    if int(tokens.max()) >= vocab_size:
        raise ValueError(f"token id {int(tokens.max())} outside vocab_size {vocab_size}")
    store = make_page_store(tokens, heldout_fraction)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")  # per-process: neurons may race
    # int32 halves the file; ids fit any realistic vocabulary.
    save_file({"tokens": tokens.to(torch.int32).contiguous()}, str(tmp),
              metadata={"page_len": str(page_len), "digest": store.digest})
    tmp.replace(path)
    dt = time.perf_counter() - t0
    ntok = tokens.numel()
    logger.info(f"pages: {store.num_pages} pages x {page_len} tokens "
                f"({len(store.train_ids)} train, {len(store.heldout_ids)} held-out), "
                f"{ntok:,} tokens in {dt:.1f}s ({ntok / max(dt, 1e-9) / 1e3:.0f}k tok/s) -> {path}")
    return store
