"""Page assignment from chain data: pure sha256 ranking that anyone can recompute.

Each candidate page gets the key sha256(seed | domain | hotkey | page_id); a draw takes the
`count` smallest keys. No RNG state, no Python `random`: the same inputs give the same pages on
every machine and in every language.
"""
from __future__ import annotations

import hashlib
import heapq
import operator
from collections.abc import Iterable, Sequence


def _block_hash_bytes(block_hash: str) -> bytes:
    h = block_hash.strip().lower()
    h = h[2:] if h.startswith("0x") else h
    try:
        return bytes.fromhex(h)
    except ValueError as exc:
        raise ValueError(f"block hash must be hex, got {block_hash!r}") from exc


def round_seed(block_hash: str, round_index: int) -> bytes:
    """s_r = sha256("deai/round" | block_hash | round_index), 32 bytes; the index is packed as 8
    big-endian bytes, so it must lie in 0..2**64-1."""
    try:
        round_index = operator.index(round_index)
    except TypeError as exc:
        raise ValueError(f"round_index must be an integer, got {type(round_index).__name__}") from exc
    if not 0 <= round_index < 2**64:
        raise ValueError(f"round_index must be within 0..2**64-1, got {round_index}")
    payload = b"deai/round|" + _block_hash_bytes(block_hash) + round_index.to_bytes(8, "big")
    return hashlib.sha256(payload).digest()


def eval_seed(block_hash: str) -> bytes:
    """e_r from a block hash after the round's deadline (unknown to miners while they train)."""
    return hashlib.sha256(b"deai/eval|" + _block_hash_bytes(block_hash)).digest()


def _ranked(seed: bytes, domain: str, hotkey: str, ids: Iterable[int], count: int) -> list[int]:
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    prefix = hashlib.sha256(seed + b"|" + domain.encode() + b"|" + hotkey.encode() + b"|")

    def key(page_id: int) -> bytes:
        h = prefix.copy()
        h.update(int(page_id).to_bytes(8, "big"))
        return h.digest()

    return heapq.nsmallest(count, {int(i) for i in ids}, key=key)


def assigned_pages(seed: bytes, hotkey: str, train_ids: Sequence[int], count: int) -> list[int]:
    """The training pages a hotkey must train on this round (at most `count`, no repeats)."""
    return _ranked(seed, "assign", hotkey, train_ids, count)


def heldout_pages(eval_seed: bytes, heldout_ids: Sequence[int], count: int) -> list[int]:
    """`count` pages of `heldout_ids` ranked by `eval_seed` (a fixed seed gives fixed pages)."""
    return _ranked(eval_seed, "heldout", "", heldout_ids, count)


# The global loss curve's pages: fixed, public, the first `count` of one ranking of the held-out
# split (any count up to KNOWN_PAGES_MAX is a prefix of the same ranking).
GLOBAL_EVAL_SEED = hashlib.sha256(b"deai/global-eval").digest()
GLOBAL_EVAL_PAGES = 128
KNOWN_PAGES_MAX = 512


def global_eval_pages(heldout_ids: Sequence[int], count: int = GLOBAL_EVAL_PAGES) -> list[int]:
    """The fixed held-out pages the global model's loss curve is measured on. They are public, so
    a miner can train on them: scoring only checks that no update helps them more than pages
    nobody could know (`known_pages`)."""
    return heldout_pages(GLOBAL_EVAL_SEED, heldout_ids, min(count, KNOWN_PAGES_MAX))


def sealed_pages(heldout_ids: Sequence[int], count: int = GLOBAL_EVAL_PAGES) -> list[int]:
    """Held-out pages no validator ever evaluates on (none of the global curve's possible pages):
    nothing points a miner at them, so an auditor measures on them what the network learnt
    about text it never saw."""
    known = set(heldout_pages(GLOBAL_EVAL_SEED, heldout_ids, KNOWN_PAGES_MAX))
    return _ranked(GLOBAL_EVAL_SEED, "sealed", "", (i for i in heldout_ids if int(i) not in known), count)


def score_pages(eval_seed: bytes, train_ids: Sequence[int], assigned: Iterable[int], count: int) -> list[int]:
    """The round's scoring pages, drawn with the eval seed (the hash of the block after the
    deadline) from every training page no miner was assigned this round: a pool far larger than
    any miner trains on in a round, so no miner can know or target them while it trains."""
    excluded = {int(i) for i in assigned}
    return _ranked(eval_seed, "score", "", (i for i in train_ids if int(i) not in excluded), count)


def known_pages(eval_seed: bytes, heldout_ids: Sequence[int], count: int) -> list[int]:
    """A sample (drawn with the eval seed) of the public global-curve pages: the pages a miner
    can know validators look at, compared with `score_pages` by the known-pages check."""
    return _ranked(eval_seed, "known", "", global_eval_pages(heldout_ids), count)


def control_pages(eval_seed: bytes, hotkey: str, train_ids: Sequence[int],
                  exclude: Iterable[int], count: int) -> list[int]:
    """Random training pages not assigned to this hotkey: the control side of the
    assigned-vs-random test."""
    excluded = {int(i) for i in exclude}
    return _ranked(eval_seed, "control", hotkey, (i for i in train_ids if int(i) not in excluded),
                   count)
