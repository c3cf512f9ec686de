"""The harness's miner behaviours (template/miner/behaviours.py), each on a stand-in for the
miner's round: its training returns a deterministic update from the pages it was given and
records what it was asked, so each behaviour's defining move can be checked in milliseconds."""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import pytest
import torch

from protocol.limits import MAX_CONTRIBUTION_BYTES
from protocol.messages import ContributionMeta
from protocol.payload import decode_tensors, encode_tensors
from protocol.recipe import CompressionConfig, Recipe
from template.config import MINER_BEHAVIOURS
from template.miner.behaviours import BEHAVIOURS, contribution, dense, step_budget_stop, update_in
from template.training.assignment import assigned_pages, global_eval_pages, sealed_pages
from template.training.compression import compress
from template.training.inner_loop import InnerStats
from template.validation.contribution import Expected, Rejected, open_contribution
from template.validation.norms import delta_norm

SHAPES = {"w": (64, 64), "b": (64,)}
RECIPE = Recipe(inner_steps=8, batch_size=4, learning_rate=1e-3, pages_per_miner=6,
                compression=CompressionConfig(topk=256, bits=2))
SEED = "ab" * 32
BASE_HASH = "cd" * 32
TRAIN, HELDOUT = list(range(0, 400)), list(range(400, 700))


class Order:
    def __init__(self, round_index: int, pages: list[int], deadline: float = 0.0):
        self.round_index, self.seed, self.pages, self.recipe = round_index, SEED, pages, RECIPE
        self.base_checkpoint, self.netuid, self.deadline_unix = BASE_HASH, 1, deadline
        from protocol.messages import UnitOfWork
        self.unit = UnitOfWork()


def fake_delta(pages: list[int], steps: int) -> dict[str, torch.Tensor]:
    """An 'update' that depends on the pages and grows with the steps."""
    gen = torch.Generator().manual_seed(int(hashlib.sha256(str(sorted(pages)).encode()).hexdigest()[:8], 16))
    return {n: torch.randn(s, generator=gen) * 1e-2 * steps for n, s in SHAPES.items()}


class Work:
    """A stand-in `RoundWork` (see template/miner/behaviours.py)."""

    def __init__(self, hotkey: str, order: Order, partner: dict[int, bytes] | None = None,
                 own: dict[int, bytes] | None = None, previous: dict | None = None, shared: Path | None = None):
        self.hotkey, self.order = hotkey, order
        self.train_ids, self.heldout_ids, self.step_budget, self.shared_dir = TRAIN, HELDOUT, 0, shared
        self._partner, self._own, self._previous = partner or {}, own or {}, previous
        self.trained: list[tuple[list[int], int]] = []
        self.residual = None

    def base(self):
        return {n: torch.ones(s) for n, s in SHAPES.items()}

    def previous_base(self):
        return self._previous

    def train(self, pages, step_budget=0):
        steps = step_budget or RECIPE.inner_steps
        self.trained.append((list(pages), steps))
        return fake_delta(pages, steps), InnerStats(1.0, 0.5, steps * 4 * 32, 0.1, steps)

    def compress(self, delta):
        update, self.residual = compress(delta, self.residual, RECIPE.compression)
        return update

    def pack(self, update, stats):
        meta = ContributionMeta(netuid=1, round_index=self.order.round_index, base_checkpoint=BASE_HASH,
                                hotkey=self.hotkey, tokens_trained=stats.tokens if stats else 0,
                                inner_steps=stats.steps if stats else 0, loss_first=0.0, loss_last=0.0,
                                train_seconds=0.0, compression=RECIPE.compression.codec_id)
        return encode_tensors(update.to_tensors(), meta.model_dump(mode="json"))

    def own_body(self, round_index):
        return self._own.get(round_index)

    def partner_body(self, round_index):
        return self._partner.get(round_index)


HOTKEY, PARTNER = "5" + "a" * 47, "5" + "b" * 47
PAGES = [1, 2, 3, 4, 5, 6]


def opened(body: bytes, hotkey: str = HOTKEY, round_index: int = 3) -> dict[str, torch.Tensor]:
    update = open_contribution(body, Expected(hotkey, 1, round_index, BASE_HASH), SHAPES, RECIPE.compression)
    return dict(update)


def meta(body: bytes) -> dict:
    return decode_tensors(body, MAX_CONTRIBUTION_BYTES)[1]


def honest_body(hotkey: str = PARTNER, round_index: int = 3, pages=(11, 12, 13, 14, 15, 16)) -> bytes:
    return contribution("honest", Work(hotkey, Order(round_index, pages)))


def cosine(a: dict, b: dict) -> float:
    dot = sum(float((a[n] * b[n]).sum()) for n in a)
    return dot / (delta_norm(a) * delta_norm(b))


def test_every_configured_behaviour_is_implemented():
    assert tuple(BEHAVIOURS) == MINER_BEHAVIOURS


def test_honest_trains_its_assigned_pages_for_the_recipe_and_reports_it():
    work = Work(HOTKEY, Order(3, PAGES))
    body = contribution("honest", work)
    assert work.trained == [(PAGES, RECIPE.inner_steps)]
    assert meta(body)["inner_steps"] == RECIPE.inner_steps and opened(body)


def test_a_slower_device_completes_its_step_budget():
    work = Work(HOTKEY, Order(3, PAGES))
    work.step_budget = 3
    contribution("honest", work)
    assert work.trained == [(PAGES, 3)]
    stop = step_budget_stop(3)
    assert [stop() for _ in range(5)] == [False, False, False, True, True]
    assert step_budget_stop(0) is None


@pytest.mark.parametrize("name, steps", [("lazy_one", 1), ("lazy_quarter", RECIPE.inner_steps // 4)])
def test_lazy_trains_fewer_steps_and_says_so(name, steps):
    work = Work(HOTKEY, Order(3, PAGES))
    body = contribution(name, work)
    assert work.trained == [(PAGES, steps)] and meta(body)["inner_steps"] == steps


def test_lazy_liar_trains_a_quarter_and_claims_the_round():
    work = Work(HOTKEY, Order(3, PAGES))
    body = contribution("lazy_liar", work)
    assert work.trained == [(PAGES, RECIPE.inner_steps // 4)]
    assert meta(body)["inner_steps"] == RECIPE.inner_steps and meta(body)["tokens_trained"] == RECIPE.inner_steps * 4 * 32


def test_zero_sends_an_all_zero_update():
    body = contribution("zero", Work(HOTKEY, Order(3, PAGES)))
    assert delta_norm(opened(body)) == 0.0


def test_noise_matches_the_partners_norm_and_not_its_direction():
    partner = honest_body()
    body = contribution("noise", Work(HOTKEY, Order(3, PAGES), partner={3: partner}))
    theirs, mine = opened(partner, PARTNER), opened(body)
    assert delta_norm(mine) == pytest.approx(delta_norm(theirs), rel=0.35)
    assert abs(cosine(mine, theirs)) < 0.2


@pytest.mark.parametrize("name, factor", [("scaled_3", 3.0), ("scaled_9", 9.0), ("scaled_100", 100.0),
                                          ("sign_flip", -1.0)])
def test_scaled_and_flipped_send_the_honest_update_transformed(name, factor):
    honest, attack = opened(contribution("honest", Work(HOTKEY, Order(3, PAGES)))), \
        opened(contribution(name, Work(HOTKEY, Order(3, PAGES))))
    assert cosine(attack, honest) == pytest.approx(math.copysign(1.0, factor), abs=0.02)
    assert delta_norm(attack) == pytest.approx(abs(factor) * delta_norm(honest), rel=0.02)


def test_copy_sends_the_partners_tensors_under_its_own_hotkey():
    partner = honest_body()
    body = contribution("copy", Work(HOTKEY, Order(3, PAGES), partner={3: partner}))
    assert decode_tensors(body, MAX_CONTRIBUTION_BYTES)[0].keys() == decode_tensors(partner, MAX_CONTRIBUTION_BYTES)[0].keys()
    assert all(torch.equal(opened(body)[n], opened(partner, PARTNER)[n]) for n in SHAPES)
    assert meta(body)["hotkey"] == HOTKEY


def test_copy_with_noise_and_a_partial_mix_stay_close_to_the_partner():
    partner = honest_body()
    noised = opened(contribution("copy_noise", Work(HOTKEY, Order(3, PAGES), partner={3: partner})))
    mix_work = Work(HOTKEY, Order(3, PAGES), partner={3: partner})
    mixed = opened(contribution("copy_mix", mix_work))
    theirs = opened(partner, PARTNER)
    assert 0.8 < cosine(noised, theirs) < 0.999
    assert 0.4 < cosine(mixed, theirs) < 0.95 and mix_work.trained == [(PAGES, 1)]


def test_a_copier_without_its_partners_bytes_fails_the_round():
    with pytest.raises(RuntimeError, match="nothing to copy"):
        contribution("copy", Work(HOTKEY, Order(3, PAGES)))


def test_stale_resends_its_earlier_update_and_trains_only_when_it_has_none():
    first = Work(HOTKEY, Order(2, PAGES))
    earlier = contribution("stale", first)
    assert first.trained  # nothing to resend yet: it trained
    again = Work(HOTKEY, Order(3, [7, 8, 9, 10, 11, 12]), own={2: earlier})
    body = contribution("stale", again)
    assert not again.trained
    assert all(torch.equal(opened(body)[n], opened(earlier, round_index=2)[n]) for n in SHAPES)
    assert meta(body)["round_index"] == 3


def test_global_replay_sends_the_last_global_step():
    step = fake_delta([99], 2)
    previous = {n: 1.0 + step[n] for n in SHAPES}
    body = contribution("global_replay", Work(HOTKEY, Order(3, PAGES), previous=previous))
    assert cosine(opened(body), step) > 0.5  # the step, as top-k of it keeps it
    assert cosine(opened(body), dense(compress(step, None, RECIPE.compression)[0], step)) > 0.999


def test_wrong_pages_trains_pages_that_are_not_its_assignment():
    work = Work(HOTKEY, Order(3, PAGES))
    contribution("wrong_pages", work)
    (pages, _), = work.trained
    assert len(pages) == len(PAGES) and not set(pages) & set(PAGES)


def test_evaldata_adds_the_pages_validators_evaluate_on_but_never_the_sealed_ones():
    work = Work(HOTKEY, Order(3, PAGES))
    contribution("evaldata", work)
    (pages, steps), = work.trained
    assert set(PAGES) <= set(pages) and set(global_eval_pages(HELDOUT)) <= set(pages)
    assert not set(sealed_pages(HELDOUT)) & set(pages) and steps == RECIPE.inner_steps


def test_sybil_trio_trains_once_on_all_members_pages_and_sends_three_disguises(tmp_path):
    members = sorted(["5" + c * 47 for c in "cde"])
    (tmp_path / "members").write_text("\n".join(members))
    seed = bytes.fromhex(SEED)
    works = [Work(hk, Order(3, assigned_pages(seed, hk, TRAIN, 6), deadline=time.time() + 5), shared=tmp_path)
             for hk in members]
    bodies = [contribution("sybil_trio", w) for w in works]
    assert [len(w.trained) for w in works] == [1, 0, 0]
    assert sorted(works[0].trained[0][0]) == sorted(p for hk in members for p in assigned_pages(seed, hk, TRAIN, 6))
    updates = [opened(b, hk) for b, hk in zip(bodies, members)]
    assert all(meta(b)["tokens_trained"] == meta(bodies[0])["tokens_trained"] > 0 for b in bodies)
    run = fake_delta(works[0].trained[0][0], RECIPE.inner_steps)
    assert all(cosine(u, run) > 0.3 for u in updates)
    assert cosine(updates[0], updates[1]) < 0.1  # re-sparsified: the next top-k, disjoint from the first


def test_late_commits_after_the_deadline():
    deadline = time.time() + 0.2
    contribution("late", Work(HOTKEY, Order(3, PAGES, deadline=deadline)))
    assert time.time() >= deadline + 1.5


def test_malformed_bytes_are_refused_by_the_validators_decoder():
    body = contribution("malformed", Work(HOTKEY, Order(3, PAGES)))
    with pytest.raises(Rejected, match="malformed update"):
        open_contribution(body, Expected(HOTKEY, 1, 3, BASE_HASH), SHAPES, RECIPE.compression)


def test_an_update_inside_bytes_reads_back_as_sent():
    work = Work(HOTKEY, Order(3, PAGES))
    sent = compress(fake_delta(PAGES, 2), None, RECIPE.compression)[0]
    base = work.base()
    assert all(torch.equal(dense(update_in(work.pack(sent, None), work, base), base)[n], dense(sent, base)[n])
               for n in SHAPES)
