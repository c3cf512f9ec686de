import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from template.training.shards import coverage_mean
from template.validation.aggregation import (COLDKEY_CAP, aggregate, coldkey_capped_weights, median_norm_clip,
                                           weighted_median)

SHAPES = {"w": (6, 5), "b": (5,)}


def delta(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=g) * scale for name, shape in SHAPES.items()}


def test_each_tensor_clipped_to_median_norm():
    deltas = [delta(0, 1.0), delta(1, 2.0), delta(2, 3.0)]
    medians = {k: sorted(float(d[k].norm()) for d in deltas)[1] for k in SHAPES}
    clipped = median_norm_clip(deltas)
    for d in clipped:
        for k in SHAPES:
            assert float(d[k].norm()) <= medians[k] * (1 + 1e-6)
    assert torch.equal(clipped[0]["w"], deltas[0]["w"])  # below the median: untouched


@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=9))
def test_weighted_median_with_equal_weights_is_the_median(values):
    assert weighted_median(values, [0.7] * len(values)) == pytest.approx(statistics.median(values))
    assert weighted_median(values) == statistics.median(values)


def test_weighted_median_follows_the_weight_not_the_count():
    assert weighted_median([1, 1, 1, 1, 5, 6, 7], [0.25] * 4 + [1, 1, 1]) == 5.5  # plain median: 1
    assert weighted_median([1, 1, 1, 1, 5, 6, 7], [0.2] * 4 + [1, 1, 1]) == 6
    assert weighted_median([1, 2, 3], [1, 1, 2]) == 2.5  # half the weight falls between 2 and 3


def test_many_low_weight_updates_do_not_drag_the_clip_down_on_full_ones():
    """Four quarter-work updates (small) beside three full rounds: an unweighted median would clip
    every full round to a quarter-round's size; weighted by work it leaves them whole."""
    full, lazy = [delta(i, 4.0) for i in range(3)], [delta(10 + i, 1.0) for i in range(4)]
    work = [1.0] * 3 + [0.25] * 4
    plain, weighted = median_norm_clip(full + lazy), median_norm_clip(full + lazy, work)
    assert float(plain[0]["w"].norm()) < 0.5 * float(full[0]["w"].norm())
    assert max(float(weighted[i]["w"].norm() / full[i]["w"].norm()) for i in range(3)) > 0.99
    merged = aggregate(full + lazy, base_weights=work)
    expected = sum(w * c["w"] for w, c in zip(work, weighted)) / sum(work)
    assert torch.allclose(merged["w"], expected, atol=1e-6)


def test_clipping_keeps_direction():
    deltas = [delta(0, 1.0), delta(1, 1.0), delta(2, 50.0)]
    clipped = median_norm_clip(deltas)
    cos = torch.nn.functional.cosine_similarity(
        clipped[2]["w"].view(-1), deltas[2]["w"].view(-1), dim=0
    )
    assert cos > 0.9999


def test_aggregate_is_mean_of_clipped():
    deltas = [delta(0), delta(1), delta(2), delta(3)]
    clipped = median_norm_clip(deltas)
    out = aggregate(deltas)
    for k in SHAPES:
        assert torch.allclose(out[k], torch.stack([c[k] for c in clipped]).mean(0), atol=1e-6)


def test_aggregate_equal_updates_returns_them():
    d = delta(0)
    out = aggregate([d, {k: v.clone() for k, v in d.items()}])
    for k in SHAPES:
        assert torch.allclose(out[k], d[k])


def test_aggregate_is_bit_for_bit_deterministic():
    deltas = [delta(i, 1.0 + i) for i in range(5)]
    a = aggregate(deltas)
    b = aggregate([{k: v.clone() for k, v in d.items()} for d in deltas])
    for k in SHAPES:
        assert a[k].dtype == torch.float32
        assert torch.equal(a[k], b[k])


def test_fewer_than_two_accepted_leaves_model_unchanged():
    assert aggregate([]) is None
    assert aggregate([delta(0)]) is None
    assert aggregate([delta(0)], min_contributions=1) is not None


def test_single_huge_malicious_update_is_clipped():
    honest = [delta(i) for i in range(3)]
    attack = {k: v * 1e6 for k, v in delta(99).items()}
    out = aggregate(honest + [attack])
    honest_mean = aggregate(honest, min_contributions=1)
    for k in SHAPES:
        max_honest = max(float(d[k].norm()) for d in honest)
        assert float(out[k].norm()) <= max_honest
        assert float((out[k] - honest_mean[k]).norm()) <= max_honest


def test_aggregate_does_not_modify_inputs():
    deltas = [delta(0), delta(1, 10.0), delta(2)]
    before = [{k: v.clone() for k, v in d.items()} for d in deltas]
    aggregate(deltas)
    for d, b in zip(deltas, before):
        for k in SHAPES:
            assert torch.equal(d[k], b[k])


def test_norm_is_the_l2_norm_and_independent_of_thread_count():
    from template.validation.norms import tensor_norm

    x = torch.randn(100_003, generator=torch.Generator().manual_seed(3))
    assert tensor_norm(x) == pytest.approx(float(x.double().norm()), rel=1e-12)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = aggregate([delta(i, 1.0 + i) for i in range(4)])
    finally:
        torch.set_num_threads(threads)
    many = aggregate([delta(i, 1.0 + i) for i in range(4)])
    for k in SHAPES:
        assert torch.equal(one[k], many[k])


def test_coldkey_weights_are_equal_until_one_coldkey_passes_a_third():
    assert coldkey_capped_weights(["a", "b", "c", "d"]) is None  # every coldkey a quarter
    assert coldkey_capped_weights(["a", "a", "b", "c", "d", "e", "f"]) is None  # 2/7 < 1/3
    assert coldkey_capped_weights(["s", "s", "s", "b", "c"]) == pytest.approx([1 / 9] * 3 + [1 / 3] * 2)
    assert coldkey_capped_weights(["s", "b", "s", "s"]) == pytest.approx([1 / 6, 1 / 2, 1 / 6, 1 / 6])
    assert coldkey_capped_weights(["s", "s"]) is None  # one coldkey: no one else to give weight to


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=40))
def test_coldkey_weights_sum_to_one_and_no_coldkey_passes_its_cap(coldkeys):
    weights = coldkey_capped_weights(coldkeys) or [1 / len(coldkeys)] * len(coldkeys)
    assert sum(weights) == pytest.approx(1.0) and all(w > 0 for w in weights)
    limit = max(COLDKEY_CAP, 1 / len(set(coldkeys)))
    for ck in set(coldkeys):
        assert sum(w for w, c in zip(weights, coldkeys) if c == ck) <= limit + 1e-9
    for ck in set(coldkeys):  # one coldkey's contributions weigh the same as each other
        assert len({round(w, 12) for w, c in zip(weights, coldkeys) if c == ck}) == 1


def test_sybil_coldkey_moves_the_aggregate_by_at_most_a_third():
    sybils = [{k: torch.ones(shape) + 1e-3 * delta(i)[k] for k, shape in SHAPES.items()} for i in range(3)]
    honest = [{k: -torch.ones(SHAPES[k]) for k in SHAPES} for _ in range(2)]
    plain = aggregate(sybils + honest)
    capped = aggregate(sybils + honest, coldkeys=["sybil"] * 3 + ["h1", "h2"])
    assert float(plain["w"].mean()) == pytest.approx(0.2, abs=1e-2)  # 3 of 5 outvote the honest
    assert float(capped["w"].mean()) == pytest.approx(-1 / 3, abs=1e-2)  # a third for the coldkey


def test_distinct_coldkeys_aggregate_bit_for_bit_as_before():
    deltas = [delta(i) for i in range(4)]
    same = aggregate(deltas, coldkeys=["a", "b", "c", "d"])
    for k in SHAPES:
        assert torch.equal(same[k], aggregate(deltas)[k])


def test_coverage_mean_weights_each_contribution():
    ones, zeros = {"w": torch.ones(2, 2)}, {"w": torch.zeros(2, 2)}
    mask = {"w": torch.tensor([[True, True], [True, False]])}
    half = {"w": torch.tensor([[True, False], [False, False]])}
    out = coverage_mean([ones, zeros], [mask, half], weights=[1.0, 3.0])["w"]
    assert out.tolist() == [[0.25, 1.0], [1.0, 0.0]]  # (1*1 + 3*0) / 4 where both cover; 0 where none
    assert torch.equal(coverage_mean([ones, zeros], [mask, half])["w"],
                       coverage_mean([ones, zeros], [mask, half], weights=[1.0, 1.0])["w"])
