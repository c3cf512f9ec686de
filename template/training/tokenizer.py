"""Tokenizers: a byte-level BPE trained offline on the corpus, or a pretrained one."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from loguru import logger
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from template.training.corpus import text_digest

EOS_TOKEN = "<|endoftext|>"
TOKENIZER_DIR = Path("tokenizers")


def train_bpe_tokenizer(text: str, vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `text`; deterministic for a given text and vocab size."""
    if vocab_size < 257 + 1:
        raise ValueError(f"vocab_size {vocab_size} too small: byte-level BPE needs >= 258")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Line-sized pieces keep the trainer's input small; merges only see within-line text anyway.
    tok.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN)


def tokenizer_digest(tokenizer: PreTrainedTokenizerFast) -> str:
    """Content hash of a tokenizer's vocabulary and merges (keys the page cache)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model", {})
    payload = json.dumps({"vocab": model.get("vocab"), "merges": model.get("merges"),
                          "added": spec.get("added_tokens")}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def build_tokenizer(cache_dir: Path, text: str, vocab_size: int) -> PreTrainedTokenizerFast:
    """Trained BPE for this corpus, cached under cache_dir keyed by corpus hash + vocab size."""
    path = Path(cache_dir) / TOKENIZER_DIR / f"bpe-{text_digest(text)}-v{vocab_size}"
    if (path / "tokenizer.json").exists():
        logger.debug(f"tokenizer: loaded from cache {path}")
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    t0 = time.perf_counter()
    tokenizer = train_bpe_tokenizer(text, vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")  # per-process: neurons may race
    tokenizer.save_pretrained(str(tmp))
    try:
        tmp.replace(path)
    except OSError:  # another process finished first; both trained the same tokenizer
        shutil.rmtree(tmp, ignore_errors=True)
    dt = time.perf_counter() - t0
    logger.info(f"tokenizer: trained byte-level BPE vocab={len(tokenizer)} on {len(text):,} chars "
                f"in {dt:.1f}s ({len(text) / max(dt, 1e-9) / 1e6:.1f} Mchar/s) -> {path}")
    return tokenizer


def load_pretrained_tokenizer(name_or_path: str, revision: str = "") -> PreTrainedTokenizerFast:
    """A pretrained model's own tokenizer: a hub id (at `revision`) or a save_pretrained folder."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **({"revision": revision} if revision else {}))
    if tokenizer.eos_token is None:
        raise ValueError(f"tokenizer {name_or_path!r} has no eos token")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
