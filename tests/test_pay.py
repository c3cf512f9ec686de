"""The pay rule and collusion groups as pure functions (docs/scoring.md, "Pay")."""
from __future__ import annotations

import pytest
import torch

from template.validation.collusion import CrossEvidence, collusion_groups, cross_evidence, edges, welch_z
from template.validation.pay import Measured, pay, reference, work_fraction

FULL = 1000


def honest(name: str, evidence: float = 0.1, gain: float = 0.05, work: float = 1.0) -> Measured:
    return Measured(name, work, evidence, gain)


def test_pay_is_at_most_proportional_to_reported_work():
    paid = pay([honest("a"), honest("b"), honest("c"), honest("lazy", work=work_fraction(250, FULL))], [])
    assert paid["a"].score == paid["b"].score == 1.0
    assert paid["lazy"].score == pytest.approx(0.25)


def test_splitting_one_round_of_work_over_four_hotkeys_earns_no_more_than_one_doing_it_all():
    quarters = [honest(f"q{i}", work=0.25) for i in range(4)]
    split = pay([honest("a"), honest("b"), *quarters], [])
    assert sum(split[f"q{i}"].score for i in range(4)) <= pay([honest("a"), honest("b"), honest("one")], [])["one"].score


def test_update_without_its_own_pages_in_it_is_paid_nothing_and_a_partial_one_its_part():
    paid = pay([honest("a"), honest("b"), honest("c"), honest("replay", evidence=0.02),
                honest("mixed", evidence=0.0375)], [])
    assert paid["replay"].score == 0.0 and paid["replay"].usefulness == 1.0  # a fifth of the median: a chance pass
    assert paid["mixed"].score == pytest.approx(0.5)  # 3/8 of the median: half way from the floor to full


def test_usefulness_caps_an_update_that_memorises_its_pages_but_helps_unseen_text_little():
    paid = pay([honest("a"), honest("b"), honest("c"), honest("overfit", evidence=0.5, gain=0.01)], [])
    assert paid["overfit"].score == pytest.approx(0.01 / (0.5 * 0.05))
    assert paid["overfit"].evidence == 1.0


def test_a_collusion_group_is_paid_once_shared_by_what_each_would_earn_alone():
    members = [honest("s0", evidence=0.06), honest("s1", evidence=0.03), honest("s2", evidence=0.03)]
    paid = pay([honest("a"), honest("b"), *members], [["s0", "s1", "s2"]])
    assert sum(paid[m.hotkey].score for m in members) == pytest.approx(1.0)  # s0 alone: evidence 0.6 of the reference
    assert [paid[m.hotkey].share for m in members] == pytest.approx([1 / 1.4, 0.2 / 1.4, 0.2 / 1.4])
    assert paid["s0"].group == ("s0", "s1", "s2") and paid["a"].group == () and paid["a"].share == 1.0


def test_a_copy_grouped_with_its_source_takes_nothing_from_it():
    copier = Measured("copier", 0.0, 0.004, 0.05)  # claims no work, carries none of its own pages
    paid = pay([honest("a"), honest("b"), honest("victim"), copier], [["victim", "copier"]])
    assert paid["victim"].score == 1.0 and paid["victim"].share == 1.0
    assert paid["copier"].score == 0.0 and paid["copier"].share == 0.0


def test_copies_in_a_group_cannot_move_the_round_reference():
    """Medians take one value per group: ten members of one group weigh as one."""
    group = [honest(f"g{i}", evidence=0.01, gain=0.005) for i in range(10)]
    paid = pay([honest("a"), honest("b"), honest("c"), *group], [[m.hotkey for m in group]])
    assert paid["a"].score == 1.0
    assert sum(paid[m.hotkey].score for m in group) == 0.0  # a tenth of the median: below the floor


def test_work_fraction_is_reported_tokens_over_a_full_round_within_zero_and_one():
    assert work_fraction(500, FULL) == 0.5
    assert work_fraction(5000, FULL) == 1.0
    assert work_fraction(None, FULL) == 1.0 and work_fraction(100, None) == 1.0


def test_welch_z_of_a_clear_difference_and_of_none():
    a, b = torch.tensor([1.0, 1.1, 0.9, 1.0]), torch.tensor([0.0, 0.1, -0.1, 0.0])
    diff, z = welch_z(a, b)
    assert diff == pytest.approx(1.0) and z > 10
    assert welch_z(b, b) == (0.0, 0.0)
    assert welch_z(torch.tensor([1.0]), b) == (0.0, 0.0)


def evidence_between(z: dict[tuple[str, str], float], keys: list[str]) -> list[CrossEvidence]:
    def gains(carrier: str, owner: str) -> torch.Tensor:  # a spread of 1 around the z wanted (n = 100)
        return torch.linspace(-1.7, 1.7, 100) + z.get((carrier, owner), 0.0) * 0.1 * 2 ** 0.5
    controls = {k: torch.linspace(-1.7, 1.7, 100) for k in keys}
    return cross_evidence(keys, gains, controls)


def test_mutual_help_joins_a_group_and_one_coldkey_needs_less_evidence():
    keys = ["a", "b", "c", "d"]
    found = evidence_between({("a", "b"): 5.0, ("b", "a"): 5.0, ("c", "d"): 2.5}, keys)
    assert collusion_groups(keys, edges(found, {}, 3.5, 2.0)) == [["a", "b"]]
    same = {"c": "ck", "d": "ck"}
    assert collusion_groups(keys, edges(found, same, 3.5, 2.0)) == [["a", "b"], ["c", "d"]]


def test_independent_updates_form_no_group():
    keys = ["a", "b", "c"]
    assert collusion_groups(keys, edges(evidence_between({}, keys), {}, 3.5, 2.0)) == []


def test_many_weak_hotkeys_cannot_pull_the_round_reference_down():
    """Five hotkeys that each show a fifth of an honest update's own-page evidence, under five
    coldkeys or one: the reference stays the honest one and they are paid nothing."""
    weak = [honest(f"w{i}", evidence=0.02) for i in range(5)]
    assert reference([honest("a"), honest("b"), honest("c"), *weak], [], lambda m: m.evidence) == 0.1
    one_owner = [Measured(f"w{i}", 1.0, 0.02, 0.05, owner="sybil") for i in range(8)]
    paid = pay([honest("a"), honest("b"), *one_owner], [])
    assert paid["a"].score == 1.0 and all(paid[f"w{i}"].score == 0.0 for i in range(8))


def test_usefulness_is_judged_only_while_the_rounds_gains_are_measurable():
    """Late in training one honest update's gain on the score pages is within their noise (check 7
    then refuses only harm): gain says nothing about usefulness there, so pay follows work and
    own-page evidence. When the round's typical gain is significant, a much smaller gain pays less."""
    gains = {"a": 0.002, "b": 0.0015, "c": -0.001}
    noisy = pay([Measured(k, 1.0, 0.1, g, gain_z=g * 500) for k, g in gains.items()], [])
    assert all(noisy[k].score == 1.0 and noisy[k].usefulness == 1.0 for k in gains)
    clear = pay([Measured(k, 1.0, 0.1, g, gain_z=g * 5000) for k, g in gains.items()], [])
    assert clear["a"].score == 1.0 and clear["c"].score == 0.0


def test_a_gain_within_its_noise_of_the_bar_is_not_held_short_of_it():
    """Round 46 of a 120-round run: three honest updates trained on their pages (assignment z 28
    to 33); the round's gains were 0.00065 (z 1.06), 0.00215 (z 3.36) and -0.00027 (z -0.48), so
    the round counted as measurable, and the third, 1.7 standard errors short of half the
    reference, was paid nothing and not merged. Judged at the top of its noise it is paid in full;
    a gain short of the bar by many standard errors still pays its part."""
    ses = {"a": 0.000615, "b": 0.000641, "c": 0.000571}
    gains = {"a": 0.00065, "b": 0.00215, "c": -0.00027}
    paid = pay([Measured(k, 1.0, 0.1, g, gain_z=g / ses[k], gain_se=ses[k]) for k, g in gains.items()], [])
    assert all(paid[k].score == 1.0 for k in gains)
    sharp = pay([Measured(k, 1.0, 0.1, g, gain_z=g / 0.00005, gain_se=0.00005) for k, g in gains.items()], [])
    assert sharp["c"].score == 0.0 and sharp["b"].score == 1.0
