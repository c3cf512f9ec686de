"""A validator keeps a round's contributions packed and decodes them tensor by tensor: the
scores and the aggregate are bit for bit those of fully decoded deltas, and no whole dense
delta is ever alive at once, however many miners sent one."""
from __future__ import annotations

import weakref

import pytest
import torch

from template.training import compression
from template.training.compression import (CompressionConfig, DecodedUpdate, MalformedUpdate, compress, decompress,
                                            shapes_of)
from template.training.evaluation import applied_delta, per_sequence_loss
from template.training.model import build_model, model_state
from template.validation.aggregation import aggregate, clip_to_norms
from template.validation.scoring import Contribution, ScoringConfig, score_round

VOCAB = 300
CFG = CompressionConfig(topk=64)


@pytest.fixture(scope="module")
def model():
    return build_model("tiny", VOCAB, seed=0, device="cpu")


def packed_updates(model, count: int) -> tuple[dict[str, tuple[int, ...]], list]:
    state = model_state(model)
    shapes = shapes_of(state)
    gen = torch.Generator().manual_seed(1)
    common = {n: torch.randn(s, generator=gen) * 1e-3 for n, s in shapes.items()}
    updates = []
    for i in range(count):
        delta = {n: common[n] + torch.randn(s, generator=gen) * 1e-3 * (1 + i % 3) for n, s in shapes.items()}
        updates.append(compress(delta, None, CFG)[0])
    updates.append(updates[0])  # a copy of the first
    return shapes, updates


def test_decoded_update_reads_like_the_dense_decode(model):
    shapes, updates = packed_updates(model, 1)
    lazy, dense = DecodedUpdate(updates[0], shapes), decompress(updates[0], shapes)
    assert list(lazy) == list(dense) and len(lazy) == len(dense)
    for name in dense:
        assert torch.equal(lazy[name], dense[name])
    with pytest.raises(KeyError):
        lazy["nope"]
    with pytest.raises(MalformedUpdate, match="unknown parameter"):
        DecodedUpdate(updates[0], {n: s for n, s in list(shapes.items())[1:]})


def test_lazy_clipping_is_the_eager_clip_bit_for_bit(model):
    shapes, updates = packed_updates(model, 1)
    dense = decompress(updates[0], shapes)
    limits = {n: 0.5 * float(t.norm()) for n, t in dense.items()}
    limits[next(iter(limits))] = 1e9  # one tensor within its limit: passed through as read
    clipped = clip_to_norms(DecodedUpdate(updates[0], shapes), limits)
    for name, tensor in dense.items():
        norm = float(tensor.norm())
        expected = tensor if limits[name] >= norm else tensor * torch.tensor(limits[name] / norm)
        torch.testing.assert_close(clipped[name], expected, rtol=1e-6, atol=0)
        assert torch.equal(clipped[name], clipped[name])  # the same tensor on every read


def score_and_aggregate(model, shapes, updates, lazy: bool):
    heldout = torch.randint(0, VOCAB, (8, 32), generator=torch.Generator().manual_seed(2))
    base = per_sequence_loss(model, heldout)

    def loss_fn(delta, scale, tokens):
        if delta is None:
            return base
        with applied_delta(model, delta, scale):
            return per_sequence_loss(model, tokens)

    deltas = [DecodedUpdate(u, shapes) if lazy else decompress(u, shapes) for u in updates]
    contributions = [Contribution(hotkey=f"hk{i}", uid=i, delta=d, arrival_index=i) for i, d in enumerate(deltas)]
    reports = score_round(contributions, loss_fn, ScoringConfig(z_min=-1e9), heldout_tokens=heldout,
                          expected_shapes=shapes)
    merged = aggregate(deltas[:-1], min_contributions=2)
    return {hk: r.to_dict() for hk, r in reports.items()}, merged


def test_scores_and_aggregate_from_packed_contributions_equal_the_dense_ones(model):
    shapes, updates = packed_updates(model, 5)
    dense_reports, dense_merged = score_and_aggregate(model, shapes, updates, lazy=False)
    lazy_reports, lazy_merged = score_and_aggregate(model, shapes, updates, lazy=True)
    assert lazy_reports == dense_reports
    assert dense_reports["hk5"]["duplicate"]["original"] == "hk0"  # the checks really ran
    assert sorted(lazy_merged) == sorted(dense_merged)
    for name in dense_merged:
        assert torch.equal(lazy_merged[name], dense_merged[name]), name


def test_no_whole_decoded_delta_is_alive_at_once(model, monkeypatch):
    shapes, updates = packed_updates(model, 6)
    live = {"bytes": 0, "peak": 0}
    real = compression._decode_part

    def counted(part, shape, cfg):
        tensor = real(part, shape, cfg)
        size = tensor.numel() * tensor.element_size()
        live["bytes"] += size
        live["peak"] = max(live["peak"], live["bytes"])
        weakref.finalize(tensor, lambda: live.__setitem__("bytes", live["bytes"] - size))
        return tensor

    monkeypatch.setattr(compression, "_decode_part", counted)
    score_and_aggregate(model, shapes, updates, lazy=True)
    one_delta = sum(4 * torch.Size(s).numel() for s in shapes.values())
    largest = max(4 * torch.Size(s).numel() for s in shapes.values())
    assert live["peak"] > 0
    assert live["peak"] <= 2 * largest < one_delta, (live["peak"], largest, one_delta)
