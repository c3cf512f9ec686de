"""What a miner sends for a round: the honest contribution, or one of the adversarial behaviours
the public harness (`bench/adversarial.py`) runs against the validators (`--miner.behaviour`).

Each behaviour is the honest pipeline with its contribution step replaced: it gets the round's
work (`RoundWork`: the order, the base checkpoint, the miner's own training, compression with its
error feedback, the packing of bytes with this order's metadata) and returns the bytes the miner
commits to. The miner process (`template/miner/worker.py`) and the in-process benches
(`bench/rounds.py`) both provide a `RoundWork`, so a behaviour is the same code in both.

Partners: `copy`, `copy_noise`, `copy_mix` and `noise` read a colluding partner's outbox (the
directory given as `--miner.copy_from_dir`): with commit-then-reveal nobody can copy another
miner's bytes in time without its help, so these stand for collusion (or a leak). `sybil_trio`
members share `--miner.shared_dir`: one of them trains once on the three hotkeys' pages and each
sends a disguised variant of that one run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from loguru import logger

from protocol.limits import MAX_CONTRIBUTION_BYTES
from protocol.messages import TrainRequest
from protocol.payload import decode_tensors, encode_tensors
from template.config import MINER_BEHAVIOURS
from template.training.assignment import assigned_pages, global_eval_pages, sealed_pages
from template.training.compression import CompressedUpdate, DecodedUpdate, compress
from template.training.inner_loop import InnerStats
from template.validation.norms import delta_norm

Delta = dict[str, torch.Tensor]

PARTNER_WAIT_MARGIN_SECONDS = 1.5  # a follower stops waiting for its partner this long before the deadline
COPY_LAG_SECONDS = 1.0  # a copier takes its partner's bytes this long after the partner committed
LATE_BY_SECONDS = 2.0  # `late` commits this long after the deadline


class RoundWork(Protocol):
    """What a behaviour may use to make its contribution for one work order."""

    hotkey: str
    order: TrainRequest
    train_ids: list[int]
    heldout_ids: list[int]
    step_budget: int  # > 0: the honest miner's device completes only this many inner steps
    shared_dir: Path | None  # a sybil group's shared directory (`members`: its hotkeys, one a line)

    def base(self) -> Delta: ...

    def previous_base(self) -> Delta | None:
        """The checkpoint this miner trained from in its previous round (public), if still held."""

    def train(self, pages: list[int], step_budget: int = 0) -> tuple[Delta, InnerStats]:
        """This miner's inner loop on `pages` from the base; the pseudo-gradient in full-model
        coordinates (`step_budget` > 0 stops after that many steps)."""

    def compress(self, delta: Delta) -> CompressedUpdate:
        """`delta` compressed with this miner's error feedback (the residual is kept)."""

    def pack(self, update: CompressedUpdate, stats: InnerStats | None) -> bytes:
        """The contribution bytes: `update` with this order's metadata (work from `stats`)."""

    def own_body(self, round_index: int) -> bytes | None: ...

    def partner_body(self, round_index: int) -> bytes | None:
        """The colluding partner's bytes of a round (None: no partner, or not there yet)."""


def step_budget_stop(budget: int) -> Callable[[], bool] | None:
    """A `should_stop` for `train_inner` that ends the loop after `budget` steps (0: no budget)."""
    if budget <= 0:
        return None
    asked = iter(range(budget + 1))
    return lambda: next(asked, budget) >= budget


# ------------------------------------------------------------------ helpers


def plain(delta: Delta, work: RoundWork) -> CompressedUpdate:
    """`delta` compressed with the round's codec and no error feedback."""
    return compress(delta, None, work.order.recipe.compression)[0]


def dense(update: CompressedUpdate, like: Delta) -> Delta:
    return dict(DecodedUpdate(update, {name: tuple(t.shape) for name, t in like.items()}))


def update_in(body: bytes, work: RoundWork, like: Delta) -> CompressedUpdate:
    """The packed update inside someone's contribution bytes (its metadata is ignored)."""
    tensors, _ = decode_tensors(body, MAX_CONTRIBUTION_BYTES)
    return CompressedUpdate.from_tensors(tensors, {n: tuple(t.shape) for n, t in like.items()},
                                         work.order.recipe.compression)


def noise_like(like: Delta, norm: float, seed: bytes) -> Delta:
    gen = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") >> 1)
    noise = {name: torch.randn(t.shape, generator=gen) for name, t in like.items()}
    return scaled(noise, norm / max(delta_norm(noise), 1e-12))


def scaled(delta: Delta, factor: float) -> Delta:
    return {name: t * factor for name, t in delta.items()}


def added(a: Delta, b: Delta) -> Delta:
    return {name: a[name] + b[name] for name in a}


def wait_for(fetch: Callable[[], object | None], deadline: float, every: float = 0.2):
    while True:
        found = fetch()
        if found is not None or time.time() >= deadline:
            return found
        time.sleep(every)


def partner_bytes(work: RoundWork) -> bytes | None:
    """The colluding partner's bytes of this round, waited for until shortly before the deadline.
    Bytes are revealed only after commitments close, so in time only a colluder can hand them
    over, and only once its own work is done: the copier takes them COPY_LAG_SECONDS after the
    partner committed (the demo reads the partner's disk; the lag stands for the hand-over, and
    keeps a copier on an idle CPU from answering a validator before its busy partner)."""
    body = wait_for(lambda: work.partner_body(work.order.round_index),
                    work.order.deadline_unix - PARTNER_WAIT_MARGIN_SECONDS)
    if body is not None:
        time.sleep(max(0.0, min(COPY_LAG_SECONDS, work.order.deadline_unix - time.time() - 0.5)))
    return body


def partner_update(work: RoundWork, base: Delta) -> Delta:
    """The colluding partner's update of this round, dense."""
    body = partner_bytes(work)
    if body is None:
        raise RuntimeError("the partner's contribution did not come before the deadline")
    return dense(update_in(body, work, base), base)


def honest_norm(work: RoundWork, base: Delta) -> float:
    """What an honest update's norm looks like, without training: the partner's last update, or
    the last global step (a mean of honest updates: about 1.5x shorter than one)."""
    for round_index in (work.order.round_index, work.order.round_index - 1):
        body = work.partner_body(round_index)
        if body is not None:
            return delta_norm(dense(update_in(body, work, base), base))
    previous = work.previous_base()
    if previous is not None:
        return 1.5 * delta_norm({n: previous[n].float() - base[n].float() for n in base})
    return 1.0


# ------------------------------------------------------------------ behaviours


def honest(work: RoundWork) -> bytes:
    delta, stats = work.train(work.order.pages, work.step_budget)
    return work.pack(work.compress(delta), stats)


def lazy(steps_of: Callable[[int], int]) -> Callable[[RoundWork], bytes]:
    """Trains fewer inner steps than the recipe's H and says so truthfully in its metadata."""
    def behaviour(work: RoundWork) -> bytes:
        delta, stats = work.train(work.order.pages, max(1, steps_of(work.order.recipe.inner_steps)))
        return work.pack(work.compress(delta), stats)
    return behaviour


def lazy_liar(work: RoundWork) -> bytes:
    """Trains a quarter of H and claims the full round in its metadata."""
    steps = work.order.recipe.inner_steps
    delta, stats = work.train(work.order.pages, max(1, steps // 4))
    claimed = dataclasses.replace(stats, steps=steps, tokens=stats.tokens // max(1, stats.steps) * steps)
    return work.pack(work.compress(delta), claimed)


def zero(work: RoundWork) -> bytes:
    base = work.base()
    return work.pack(work.compress({n: torch.zeros_like(t, dtype=torch.float32) for n, t in base.items()}), None)


def noise(work: RoundWork) -> bytes:
    """Random noise at an honest update's norm (as sent: measured after compression)."""
    base = work.base()
    raw = noise_like(base, 1.0, work.order.seed.encode())
    sent = delta_norm(dense(plain(raw, work), base))
    return work.pack(plain(scaled(raw, honest_norm(work, base) / max(sent, 1e-12)), work), None)


def scaled_by(factor: float) -> Callable[[RoundWork], bytes]:
    """Honest training, the update sent `factor` times larger (to weigh more in the mean)."""
    def behaviour(work: RoundWork) -> bytes:
        delta, stats = work.train(work.order.pages)
        update = work.compress(delta)
        for part in update.parts.values():
            part.scale = (part.scale.float() * factor).clamp(max=65504.0).to(torch.float16)
        return work.pack(update, stats)
    return behaviour


def sign_flip(work: RoundWork) -> bytes:
    """Honest training, the update sent with its sign flipped."""
    delta, stats = work.train(work.order.pages)
    return work.pack(plain(scaled(dense(work.compress(delta), delta), -1.0), work), stats)


def copy(work: RoundWork) -> bytes:
    """The partner's bytes of this round, sent as its own (only the metadata's hotkey changed)."""
    body = partner_bytes(work)
    if body is None:
        raise RuntimeError("nothing to copy before the deadline")
    tensors, meta = decode_tensors(body, MAX_CONTRIBUTION_BYTES)
    return encode_tensors(tensors, dict(meta or {}, hotkey=work.hotkey))


def copy_noise(work: RoundWork) -> bytes:
    """0.9x the partner's update plus noise at 0.3x its norm on the partner's values."""
    base = work.base()
    theirs = partner_update(work, base)
    disguise = noise_like(theirs, 1.0, work.order.seed.encode() + work.hotkey.encode())
    disguise = {n: t * (theirs[n] != 0) for n, t in disguise.items()}  # on its values: top-k keeps them
    disguise = scaled(disguise, 0.3 * delta_norm(theirs) / max(delta_norm(disguise), 1e-12))
    return work.pack(plain(added(scaled(theirs, 0.9), disguise), work), None)


def copy_mix(work: RoundWork) -> bytes:
    """Half the partner's update, half its own one-step update (a partial mix)."""
    base = work.base()
    theirs = partner_update(work, base)
    own, stats = work.train(work.order.pages, 1)
    own = scaled(own, delta_norm(theirs) / max(delta_norm(own), 1e-12))
    return work.pack(plain(added(scaled(theirs, 0.5), scaled(own, 0.5)), work), stats)


def stale(work: RoundWork) -> bytes:
    """Its own earlier update sent again (trains once, the first time it has nothing to resend)."""
    for round_index in range(work.order.round_index - 1, work.order.round_index - 9, -1):
        body = work.own_body(round_index)
        if body is not None:
            base = work.base()
            return work.pack(update_in(body, work, base), None)
    return honest(work)


def global_replay(work: RoundWork) -> bytes:
    """The last global step (previous checkpoint minus this one) sent as an update."""
    base, previous = work.base(), work.previous_base()
    if previous is None:
        return zero(work)
    return work.pack(plain({n: previous[n].float() - base[n].float() for n in base}, work), None)


def wrong_pages(work: RoundWork) -> bytes:
    """Honest training on pages that are not its assignment."""
    pages = assigned_pages(bytes.fromhex(work.order.seed), work.hotkey + "/elsewhere", work.train_ids,
                           len(work.order.pages))
    delta, stats = work.train(pages)
    return work.pack(work.compress(delta), stats)


def evaldata(work: RoundWork) -> bytes:
    """Trains on its assigned pages plus the pages validators evaluate on, as far as a miner can
    know them: the fixed pages of the global loss curve and others of the held-out split (the
    sealed ones aside: no validator ever reads them, so nothing points a miner at them)."""
    known = global_eval_pages(work.heldout_ids)
    skip = set(sealed_pages(work.heldout_ids)) | set(known)
    others = [p for p in work.heldout_ids if p not in skip]
    extra = assigned_pages(bytes.fromhex(work.order.seed), work.hotkey + "/heldout", others, len(known))
    delta, stats = work.train(list(work.order.pages) + known + extra)
    return work.pack(work.compress(delta), stats)


def sybil_members(shared: Path) -> list[str]:
    """The group's hotkeys (`members` in the shared dir, one a line), sorted."""
    return sorted(line.strip() for line in (shared / "members").read_text().splitlines() if line.strip())


def sybil_trio(work: RoundWork) -> bytes:
    """One training run on the pages of every member of its group, sent under each member's
    hotkey in a different disguise: the run's top-k (sent by the member with the smallest hotkey,
    which trains), the next top-k of the same run (re-sparsified), and the run scaled 1.3x with
    noise on top. Each claims the run's work."""
    shared = work.shared_dir
    if shared is None:
        raise RuntimeError("sybil_trio needs --miner.shared_dir")
    members = sybil_members(shared)
    rank = members.index(work.hotkey)
    run = shared / f"round-{work.order.round_index}.pt"
    if rank == 0:
        seed = bytes.fromhex(work.order.seed)
        pages = [p for hk in members for p in assigned_pages(seed, hk, work.train_ids, len(work.order.pages))]
        delta, stats = work.train(pages)
        tmp = run.with_suffix(".tmp")
        torch.save({"delta": delta, "stats": dataclasses.replace(stats, optimizer_state=None).__dict__}, tmp)
        tmp.replace(run)
    else:
        found = wait_for(lambda: torch.load(run) if run.exists() else None,
                         work.order.deadline_unix - PARTNER_WAIT_MARGIN_SECONDS)
        if found is None:
            raise RuntimeError("the group's training run did not come before the deadline")
        delta, stats = found["delta"], InnerStats(**found["stats"])
    first = plain(delta, work)
    if rank % 3 == 0:
        update = first
    elif rank % 3 == 1:
        update = plain({n: delta[n] - t for n, t in dense(first, delta).items()}, work)
    else:
        disguise = noise_like(delta, 0.3 * delta_norm(delta), work.order.seed.encode() + work.hotkey.encode())
        update = plain(added(scaled(delta, 1.3), disguise), work)
    return work.pack(update, stats)


def late(work: RoundWork) -> bytes:
    """Honest work, committed after the deadline."""
    body = honest(work)
    time.sleep(max(0.0, work.order.deadline_unix + LATE_BY_SECONDS - time.time()))
    return body


def malformed(work: RoundWork) -> bytes:
    """Bytes that do not decode: a well-formed payload whose first code tensor is one byte short."""
    tensors, meta = decode_tensors(zero(work), MAX_CONTRIBUTION_BYTES)
    name = next(n for n in sorted(tensors) if n.endswith("|codes"))
    tensors[name] = tensors[name][:-1].clone()
    return encode_tensors(tensors, meta)


BEHAVIOURS: dict[str, Callable[[RoundWork], bytes]] = {
    "honest": honest,
    "zero": zero,
    "noise": noise,
    "scaled_3": scaled_by(3.0),
    "scaled_9": scaled_by(9.0),
    "scaled_100": scaled_by(100.0),
    "sign_flip": sign_flip,
    "copy": copy,
    "copy_noise": copy_noise,
    "copy_mix": copy_mix,
    "stale": stale,
    "global_replay": global_replay,
    "lazy_one": lazy(lambda steps: 1),
    "lazy_quarter": lazy(lambda steps: steps // 4),
    "lazy_liar": lazy_liar,
    "wrong_pages": wrong_pages,
    "evaldata": evaldata,
    "sybil_trio": sybil_trio,
    "late": late,
    "malformed": malformed,
}
assert tuple(BEHAVIOURS) == MINER_BEHAVIOURS, "template.config.MINER_BEHAVIOURS names every behaviour, in order"

def contribution(name: str, work: RoundWork) -> bytes:
    """The bytes this behaviour commits to for the round."""
    body = BEHAVIOURS[name](work)
    if name != "honest":
        logger.info("round {}: behaviour {} made {} bytes", work.order.round_index, name, len(body))
    return body
