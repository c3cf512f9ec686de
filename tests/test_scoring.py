"""Scoring on a real tiny language model.

The synthetic language: next token is prev+1 (shared grammar, 60%), a topic-specific
successor map (25%) or uniform noise. Honest miners train on their assigned pages of one
topic; held-out and control pages mix all topics.
"""

import json
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from template.validation.scoring import (
    CHECK_ORDER,
    Contribution,
    ScoringConfig,
    assigned_vs_random,
    paired_gain,
    score_round,
)

V, L, TOPICS = 32, 33, 4
_g = torch.Generator().manual_seed(0)
SUCCESSOR = torch.stack([torch.randperm(V, generator=_g) for _ in range(TOPICS)])


def pages(topic: int | None, n: int, seed: int) -> torch.Tensor:
    """n pages of L tokens from one topic (None: each page from a random topic)."""
    g = torch.Generator().manual_seed(seed)
    if topic is None:
        topics = torch.randint(TOPICS, (n,), generator=g)
    else:
        topics = torch.full((n,), topic)
    out = torch.empty(n, L, dtype=torch.long)
    out[:, 0] = torch.randint(V, (n,), generator=g)
    for t in range(1, L):
        prev, r = out[:, t - 1], torch.rand(n, generator=g)
        noise = torch.randint(V, (n,), generator=g)
        topical = torch.where(r < 0.85, SUCCESSOR[topics, prev], noise)
        out[:, t] = torch.where(r < 0.6, (prev + 1) % V, topical)
    return out


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, 16)
        self.head = nn.Linear(16, V)

    def forward(self, tokens):
        return self.head(self.emb(tokens))


def per_sequence_loss(model, params, tokens):
    logits = functional_call(model, params, (tokens[:, :-1],))
    targets = tokens[:, 1:].reshape(-1)
    loss = nn.functional.cross_entropy(logits.reshape(-1, V), targets, reduction="none")
    return loss.view(tokens.shape[0], -1).mean(1)


class World:
    def __init__(self):
        torch.manual_seed(0)
        self.model = TinyLM()
        self.base = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        self.shapes = {k: tuple(v.shape) for k, v in self.base.items()}
        self.heldout = pages(None, 64, 3)
        self.calls: list[tuple[bool, int]] = []  # (is_base, id(tokens)) per loss_fn call

    def train(self, tokens, steps=30, lr=0.01):
        params = {k: v.clone().requires_grad_(True) for k, v in self.base.items()}
        opt = torch.optim.AdamW(params.values(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            per_sequence_loss(self.model, params, tokens).mean().backward()
            opt.step()
        return {k: (self.base[k] - params[k]).detach() for k in self.base}

    def loss_fn(self, delta, scale, tokens):
        self.calls.append((delta is None, id(tokens)))
        with torch.no_grad():
            params = self.base
            if delta is not None:
                params = {k: self.base[k] - scale * delta[k] for k in self.base}
            return per_sequence_loss(self.model, params, tokens)


@pytest.fixture(scope="module")
def world():
    w = World()
    w.alice_pages, w.bob_pages, w.carol_pages = pages(0, 16, 1), pages(2, 16, 5), pages(0, 16, 6)
    w.control = pages(None, 16, 2)
    w.alice = w.train(w.alice_pages)
    w.bob = w.train(w.bob_pages)
    w.carol = w.train(pages(1, 16, 4))  # ignored its assignment (topic 0), trained on topic 1
    g = torch.Generator().manual_seed(7)
    w.copy = {  # alice's update with a little noise on top
        k: v + 0.01 * v.abs().mean() * torch.randn(v.shape, generator=g) for k, v in w.alice.items()
    }
    alice_norm = math.sqrt(sum(float((v**2).sum()) for v in w.alice.values()))
    noise = {k: torch.randn(v.shape, generator=g) for k, v in w.alice.items()}
    noise_norm = math.sqrt(sum(float((v**2).sum()) for v in noise.values()))
    w.noise = {k: v * (alice_norm / noise_norm) for k, v in noise.items()}
    w.zero = {k: torch.zeros_like(v) for k, v in w.alice.items()}
    w.replacer = {k: v * 100.0 for k, v in w.bob.items()}
    return w


def contributions(w, include_copy=True):
    spec = [
        ("alice", w.alice, w.alice_pages, None),
        ("bob", w.bob, w.bob_pages, None),
        ("carol", w.carol, w.carol_pages, None),
        ("mallory", w.copy, w.alice_pages, None),
        ("nora", w.noise, w.alice_pages, None),
        ("zed", w.zero, w.alice_pages, None),
        ("pat", None, w.alice_pages, "malformed payload: bad index count in chunk 3"),
        ("rex", w.replacer, w.bob_pages, None),
    ]
    if not include_copy:
        spec = [s for s in spec if s[0] != "mallory"]
    return [
        Contribution(hotkey, uid, delta, arrival_index=uid, rejected_reason=rejected,
                     assigned_tokens=assigned, control_tokens=w.control)
        for uid, (hotkey, delta, assigned, rejected) in enumerate(spec)
    ]


@pytest.fixture(scope="module")
def reports(world):
    world.calls.clear()
    out = score_round(contributions(world), world.loss_fn, ScoringConfig(),
                      heldout_tokens=world.heldout, expected_shapes=world.shapes)
    world.round_calls = list(world.calls)
    return out


def test_honest_update_gains_significantly_and_passes_assignment(reports):
    for hotkey in ("alice", "bob"):
        r = reports[hotkey]
        assert r.accepted and r.reason == "accepted"
        assert r.heldout.mean > 0 and r.heldout.z >= 2.0
        assert r.assignment.passed and r.assignment.assigned_gain > r.assignment.random_gain
        assert r.score == r.heldout.mean
        assert r.pay == 1.0  # a full round's work (no claim read), own pages and gain both typical


def test_update_trained_on_other_data_fails_assigned_vs_random(reports):
    r = reports["carol"]
    assert r.check("heldout_gain").passed  # it does help held-out loss...
    assert r.check("assigned_vs_random").passed is False  # ...but not its own pages
    assert r.reason.startswith("assigned_vs_random:")
    assert r.score == 0.0 and not r.accepted


def test_zero_update_scores_exactly_zero(reports):
    r = reports["zed"]
    assert r.score == 0.0 and not r.accepted
    assert r.reason.startswith("non_empty: empty update")


def test_noise_update_scores_zero(reports):
    r = reports["nora"]
    assert r.check("norm").passed  # same norm as an honest update
    assert r.reason.startswith("heldout_gain:")
    assert r.score == 0.0


def test_copy_scores_zero_while_original_keeps_its_score(world, reports):
    r = reports["mallory"]
    assert r.score == 0.0
    assert r.duplicate.original == "alice"
    assert r.reason.startswith("duplicate: duplicate of earlier alice")
    without_copy = score_round(contributions(world, include_copy=False), world.loss_fn,
                               heldout_tokens=world.heldout, expected_shapes=world.shapes)
    assert reports["alice"].score > 0
    assert reports["alice"].score == without_copy["alice"].score


def test_pre_rejected_contribution_scores_zero_with_its_reason(reports):
    r = reports["pat"]
    assert r.score == 0.0
    assert r.reason == "payload: malformed payload: bad index count in chunk 3"


def test_huge_update_rejected_by_norm_gate(reports):
    r = reports["rex"]
    assert r.score == 0.0 and r.reason.startswith("norm:") and "replacement" in r.reason


def test_wrong_shape_update_rejected_with_name(world):
    bad = dict(world.alice, extra=torch.zeros(2))
    out = score_round([Contribution("eve", 9, bad, 0)], world.loss_fn,
                      heldout_tokens=world.heldout, expected_shapes=world.shapes)
    assert out["eve"].reason == "shape: unexpected tensors: extra" and out["eve"].score == 0.0


def test_every_report_has_every_check_with_a_reason(reports):
    for r in reports.values():
        assert [c.name for c in r.checks] == list(CHECK_ORDER)
        assert all(c.reason for c in r.checks)
        failed = [c for c in r.checks if c.passed is False]
        assert r.accepted == (not failed)
        if failed:
            assert len(failed) == 1 and r.reason == f"{failed[0].name}: {failed[0].reason}"
        json.loads(json.dumps(r.to_dict(), allow_nan=False))


def test_base_losses_computed_once_per_token_set(world, reports):
    base_calls = [tok for is_base, tok in world.round_calls if is_base]
    assert base_calls.count(id(world.heldout)) == 1
    assert base_calls.count(id(world.control)) == 1
    assert len(base_calls) == len(set(base_calls))


def test_paired_gain_is_mean_over_standard_error():
    before = torch.tensor([3.0, 2.0, 4.0, 3.0])
    after = torch.tensor([2.0, 1.5, 3.0, 2.5])
    g = paired_gain(before, after)
    d = before - after
    assert g.n == 4 and g.mean == pytest.approx(float(d.mean()))
    assert g.z == pytest.approx(float(d.mean() / (d.std() / 2)))


def test_paired_gain_with_zero_spread_is_guarded():
    assert paired_gain(torch.ones(4), torch.ones(4)).z == 0.0
    assert paired_gain(torch.full((4,), 2.0), torch.ones(4)).z == math.inf
    assert paired_gain(torch.tensor([2.0]), torch.tensor([1.0])).z == 0.0


def test_assigned_vs_random_passes_only_when_assigned_gain_is_larger():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(16, generator=g) + 3
    helped = base - 1.0 + 0.1 * torch.rand(16, generator=g)
    little = base - 0.2 + 0.1 * torch.rand(16, generator=g)
    assert assigned_vs_random(base, helped, base, little).passed
    assert not assigned_vs_random(base, little, base, helped).passed


def test_assignment_test_sees_through_gains_that_follow_the_base_loss():
    """Every page gains by its base loss (a generic update) plus 0.01 on the pages it trained on:
    a plain comparison measures mostly which pages the draw handed each side, the adjusted one
    the 0.01."""
    g = torch.Generator().manual_seed(3)
    base_a, base_r = 4 + torch.rand(48, generator=g), 4 + torch.rand(48, generator=g)
    gain_a = 0.1 - 0.3 * (base_a - 4.5) + 0.002 * torch.randn(48, generator=g) + 0.01
    gain_r = 0.1 - 0.3 * (base_r - 4.5) + 0.002 * torch.randn(48, generator=g)
    trained = assigned_vs_random(base_a, base_a - gain_a, base_r, base_r - gain_r)
    assert trained.passed and trained.z > 10 and abs(trained.diff - 0.01) < 0.002
    plain_z = float(gain_a.mean() - gain_r.mean()) / math.sqrt(float(gain_a.var()) / 48 + float(gain_r.var()) / 48)
    assert plain_z < trained.z / 5, (plain_z, trained.z)


def test_assignment_test_gives_no_edge_for_knowing_which_pages_are_easy():
    """An update that never saw its pages but whose generic gain rises with base loss, handed
    assigned pages that happen to be hard: a plain comparison would credit it, the adjusted one
    does not."""
    g = torch.Generator().manual_seed(4)
    base_a, base_r = 5 + torch.rand(48, generator=g), 4 + torch.rand(48, generator=g)
    generic = lambda base: 0.2 * (base - 4) + 0.01 * torch.randn(48, generator=g)  # noqa: E731
    lucky = assigned_vs_random(base_a, base_a - generic(base_a), base_r, base_r - generic(base_r))
    assert lucky.assigned_gain - lucky.random_gain > 0.15  # raw: far more gain on its own pages
    assert not lucky.passed and abs(lucky.diff) < 0.05


def test_losses_that_overflowed_never_pass_a_test():
    base = torch.full((8,), 5.0) + torch.arange(8) * 0.1
    broken = base.clone()
    broken[3] = float("nan")
    test = assigned_vs_random(base, broken - 1.0, base, base - 0.1)
    assert not test.passed and test.z == 0.0
    assert paired_gain(base, broken).z == 0.0


def test_assignment_test_without_spread_in_base_loss_is_the_plain_welch_test():
    g = torch.Generator().manual_seed(5)
    base = torch.full((16,), 5.0)
    after_a, after_r = base - 0.2 - 0.05 * torch.rand(16, generator=g), base - 0.1 - 0.05 * torch.rand(16, generator=g)
    test = assigned_vs_random(base, after_a, base, after_r)
    a, r = base - after_a, base - after_r
    welch = float(a.mean() - r.mean()) / math.sqrt(float(a.var()) / 16 + float(r.var()) / 16)
    assert test.z == pytest.approx(welch)


def test_copy_that_arrives_first_is_still_the_duplicate(world):
    """Arrival order can be gamed; the copy helps its victim's pages, not its own."""
    copier_pages = pages(1, 16, 9)
    round_ = [
        Contribution("mallory", 0, world.copy, arrival_index=0, assigned_tokens=copier_pages,
                     control_tokens=world.control),
        Contribution("alice", 1, world.alice, arrival_index=1, assigned_tokens=world.alice_pages,
                     control_tokens=world.control),
        Contribution("bob", 2, world.bob, arrival_index=2, assigned_tokens=world.bob_pages,
                     control_tokens=world.control),
    ]
    out = score_round(round_, world.loss_fn, ScoringConfig(), heldout_tokens=world.heldout,
                      expected_shapes=world.shapes)
    assert out["alice"].accepted and out["alice"].score > 0
    assert out["mallory"].score == 0.0
    assert out["mallory"].duplicate.original == "alice"


def test_update_trained_on_the_known_evaluation_pages_fails_the_known_pages_check(world):
    """The public pages a miner can know validators look at (topic 3 here): an update that trained on
    them helps them more than the unseen score pages, which no miner could know."""
    known = pages(3, 32, 11)
    evaldata = world.train(torch.cat([world.alice_pages, pages(3, 32, 12), known]))
    round_ = [Contribution("alice", 0, world.alice, 0, assigned_tokens=world.alice_pages, control_tokens=world.control),
              Contribution("bob", 1, world.bob, 1, assigned_tokens=world.bob_pages, control_tokens=world.control),
              Contribution("eve", 2, evaldata, 2, assigned_tokens=world.alice_pages, control_tokens=world.control)]
    out = score_round(round_, world.loss_fn, heldout_tokens=world.heldout, expected_shapes=world.shapes,
                      known_tokens=known)
    assert out["eve"].check("heldout_gain").passed  # it does help unseen text...
    assert out["eve"].reason.startswith("known_pages: helps the known evaluation pages more than unseen ones")
    assert out["eve"].score == 0.0
    assert out["alice"].accepted and out["bob"].accepted and out["alice"].known.z < 3.0


def test_reported_work_caps_pay(world):
    round_ = [Contribution("alice", 0, world.alice, 0, assigned_tokens=world.alice_pages,
                           control_tokens=world.control, claimed_tokens=1000),
              Contribution("bob", 1, world.bob, 1, assigned_tokens=world.bob_pages, control_tokens=world.control,
                           claimed_tokens=250)]
    out = score_round(round_, world.loss_fn, heldout_tokens=world.heldout, expected_shapes=world.shapes,
                      full_work_tokens=1000)
    assert out["alice"].pay == 1.0 and out["bob"].pay == pytest.approx(0.25)
    assert out["bob"].work == 0.25


def test_one_run_sent_under_three_hotkeys_is_grouped_and_paid_once(world):
    """A sybil trio: one training run on the three hotkeys' pages, sent as three disguised variants
    (scaled, noised, half of it). Each helps the others' pages as much as its own."""
    trio_pages = [pages(1, 16, 21), pages(1, 16, 22), pages(1, 16, 23)]
    run = world.train(torch.cat(trio_pages))
    g = torch.Generator().manual_seed(3)
    variants = [run, {k: 1.3 * v + 0.2 * v.abs().mean() * torch.randn(v.shape, generator=g) for k, v in run.items()},
                {k: v * (torch.rand(v.shape, generator=g) < 0.5) for k, v in run.items()}]
    trio = [Contribution(f"sybil{i}", 2 + i, variants[i], 2 + i, assigned_tokens=trio_pages[i],
                         control_tokens=world.control, coldkey="operator") for i in range(3)]
    alone = [Contribution("alice", 0, world.alice, 0, assigned_tokens=world.alice_pages,
                          control_tokens=world.control, coldkey="a"),
             Contribution("bob", 1, world.bob, 1, assigned_tokens=world.bob_pages, control_tokens=world.control,
                          coldkey="b")]
    out = score_round(alone + trio, world.loss_fn, ScoringConfig(duplicate_cosine=1.01, duplicate_overlap=1.01),
                      heldout_tokens=world.heldout, expected_shapes=world.shapes)
    assert all(out[f"sybil{i}"].group == ["sybil0", "sybil1", "sybil2"] for i in range(3))
    assert sum(out[f"sybil{i}"].pay for i in range(3)) <= out["alice"].pay
    assert sum(out[f"sybil{i}"].merge_weight for i in range(3)) == pytest.approx(1.0)
    assert out["alice"].group == [] and out["alice"].merge_weight == 1.0
