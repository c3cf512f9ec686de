import math

import torch

from template.validation.checks import (
    find_duplicates,
    is_empty,
    non_finite,
    norm_outlier,
    payload_problem,
    similarity_matrices,
    wrong_shape,
)

SHAPES = {"emb": (8, 4), "head": (4, 8), "bias": (8,)}


def random_delta(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=g) * scale for name, shape in SHAPES.items()}


def test_finite_update_passes_every_structural_check():
    d = random_delta(0)
    assert non_finite(d) is None
    assert wrong_shape(d, SHAPES) is None
    assert is_empty(d) is None
    assert payload_problem(d) is None


def test_non_finite_update_rejected_with_tensor_name():
    d = random_delta(0)
    d["head"][1, 2] = math.nan
    d["head"][0, 0] = math.inf
    reason = non_finite(d)
    assert reason is not None and "'head'" in reason and "2 of 32" in reason


def test_missing_tensor_rejected_with_name():
    d = random_delta(0)
    del d["bias"]
    assert "missing tensors: bias" in wrong_shape(d, SHAPES)


def test_unexpected_tensor_rejected_with_name():
    d = random_delta(0)
    d["extra"] = torch.zeros(3)
    assert "unexpected tensors: extra" in wrong_shape(d, SHAPES)


def test_shape_mismatch_rejected_with_name_and_shapes():
    d = random_delta(0)
    d["emb"] = torch.zeros(8, 5)
    reason = wrong_shape(d, SHAPES)
    assert "'emb'" in reason and "(8, 4)" in reason and "(8, 5)" in reason


def test_all_zero_update_is_empty():
    d = {name: torch.zeros(shape) for name, shape in SHAPES.items()}
    assert "empty update" in is_empty(d)


def test_malformed_payload_rejected():
    assert payload_problem(None) == "no payload"
    assert "expected a tensor" in payload_problem({"emb": [1.0, 2.0]})
    assert "floating dtype" in payload_problem({"emb": torch.zeros(2, dtype=torch.int64)})


def test_norm_within_bounds_passes():
    assert norm_outlier(1.0, 1.0) is None
    assert norm_outlier(0.06, 1.0) is None
    assert norm_outlier(9.9, 1.0) is None


def test_tiny_norm_rejected_as_no_op():
    assert "no-op" in norm_outlier(0.01, 1.0)


def test_huge_norm_rejected_as_replacement():
    assert "replacement" in norm_outlier(50.0, 1.0)


def test_identical_copy_flagged_as_duplicate_of_earlier():
    original = random_delta(1)
    copy = {k: v.clone() for k, v in original.items()}
    found = find_duplicates([("alice", original), ("bob", random_delta(2)), ("mallory", copy)])
    assert set(found) == {"mallory"}
    assert found["mallory"].original == "alice"
    assert found["mallory"].cosine > 0.999


def test_slightly_noised_copy_flagged_while_original_is_not():
    original = random_delta(1)
    g = torch.Generator().manual_seed(9)
    noised = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in original.items()}
    found = find_duplicates([("alice", original), ("mallory", noised)])
    assert "alice" not in found
    assert found["mallory"].original == "alice"
    assert "duplicate of earlier alice" in found["mallory"].reason


def test_copy_of_top_coordinates_caught_by_topk_overlap():
    # Same large coordinates, different values elsewhere: cosine may drop, top-k stays.
    big = torch.tensor([10.0, 9.0, 8.0, 7.0])
    original = random_delta(1, scale=0.01)
    for v in original.values():
        v.view(-1)[:4] = big
    other = random_delta(5, scale=0.01)
    for v in other.values():
        v.view(-1)[:4] = -big
    found = find_duplicates(
        [("alice", original), ("mallory", other)], cosine_threshold=1.0, topk_fraction=0.1
    )
    assert found["mallory"].overlap == 1.0 and "top-k overlap" in found["mallory"].reason


def test_unrelated_random_updates_not_flagged():
    deltas = [(f"miner{i}", random_delta(100 + i)) for i in range(8)]
    assert find_duplicates(deltas, topk_fraction=0.1) == {}


def test_similarity_streams_in_blocks_like_one_concatenation(monkeypatch):
    import template.validation.checks as checks

    deltas = [random_delta(i) for i in range(4)]
    full, _ = similarity_matrices(deltas)
    monkeypatch.setattr(checks, "_BLOCK_ELEMENTS", 8)  # 2 columns per block
    streamed, _ = similarity_matrices(deltas)
    flat = torch.stack([torch.cat([d[k].reshape(-1) for k in SHAPES]) for d in deltas]).double()
    unit = flat / flat.norm(dim=1, keepdim=True)
    assert torch.allclose(full, unit @ unit.T, atol=1e-6)
    assert torch.allclose(streamed, full, atol=1e-6)
