"""Shards: masks, extraction, training only the shard, mapping deltas back (tiny preset)."""
import pytest
import torch

from bench.shard_geometry import sub_shapes, trained_fraction
from protocol.recipe import Recipe
from template.training.compression import shapes_of
from template.training.evaluation import per_sequence_loss
from template.training.inner_loop import pseudo_gradient, train_inner
from template.training.model import build_model, model_state
from template.training.outer_step import apply_outer_step
from template.training.shards import (ShardSpec, coverage_mean, delta_to_full, extract,
                                      shard_mask, shard_plan, sub_state)

VOCAB = 256


@pytest.fixture(scope="module")
def base():
    return model_state(build_model("tiny", VOCAB, seed=0, device="cpu"))


@pytest.fixture(scope="module")
def shapes(base):
    return shapes_of(base)


def recipe(steps: int) -> Recipe:
    return Recipe(inner_steps=steps, batch_size=4, learning_rate=1e-2, pages_per_miner=8)


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (8, 16), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scheme", ["layers", "width"])
def test_training_a_shard_changes_only_its_coordinates(base, shapes, scheme):
    spec = ShardSpec(scheme, 1, 4)
    model, plan = extract(base, spec, "tiny", VOCAB)
    start = sub_state(model)
    train_inner(model, tokens(), recipe(3))
    full_delta = delta_to_full(pseudo_gradient(start, model), plan, shapes)
    new = apply_outer_step(base, full_delta, 1.0)
    mask = shard_mask(spec, "tiny", VOCAB, shapes)
    changed = sum(int(((new[n] != base[n]) & m).sum()) for n, m in mask.items())
    trained = sum(int(m.sum()) for m in mask.values())
    for name, m in mask.items():
        assert torch.equal(new[name][~m], base[name][~m]), f"{name} changed outside the shard"
    assert changed > 0.9 * trained, "most trained coordinates should move"


def test_layer_shard_frozen_parameters_stay_bitwise_equal(base):
    model, plan = extract(base, ShardSpec("layers", 0, 4), "tiny", VOCAB)
    train_inner(model, tokens(), recipe(2))
    for name, p in model.named_parameters():
        if name not in plan:
            assert not p.requires_grad and torch.equal(p.detach(), base[name])


def test_width_shard_frozen_vocab_rows_stay_bitwise_equal(base):
    model, plan = extract(base, ShardSpec("width", 2, 4), "tiny", VOCAB)
    table = model.model.embed_tokens.table
    lo, hi = table.lo.clone(), table.hi.clone()
    train_inner(model, tokens(), recipe(2))
    assert torch.equal(table.lo, lo) and torch.equal(table.hi, hi)
    assert not any(n.endswith((".lo", ".hi")) for n, _ in model.named_parameters())


@pytest.mark.parametrize("scheme", ["layers", "width"])
def test_delta_to_full_round_trip(shapes, scheme):
    spec = ShardSpec(scheme, 3, 4)
    plan = shard_plan(spec, "tiny", VOCAB, shapes)
    sub = {n: torch.randn(s) for n, s in sub_shapes(plan, shapes).items()}
    full = delta_to_full(sub, plan, shapes)
    assert set(full) == set(plan)
    mask = shard_mask(spec, "tiny", VOCAB, shapes)
    for name, s in plan.items():
        back = full[name]
        if s.rows is not None:
            back = back.index_select(0, s.rows)
        if s.cols is not None:
            back = back.index_select(1, s.cols)
        sub_name = {"model.embed_tokens.part": "model.embed_tokens.table.part",
                    "lm_head.part": "lm_head.table.part"}.get(s.sub_name, s.sub_name)
        torch.testing.assert_close(back, sub[sub_name])
        assert not full[name][~mask[name]].any()


def test_width_plan_copies_weights_unscaled(base, shapes):
    """No HeteroFL total/kept scaler: the sub-model holds the full model's own values, and a
    delta returns to full coordinates as it is (the scaler measured worse; shards.py doc)."""
    spec = ShardSpec("width", 1, 4)
    plan = shard_plan(spec, "tiny", VOCAB, shapes)
    model, _ = extract(base, spec, "tiny", VOCAB)
    params = dict(model.named_parameters())
    for name in ("model.layers.0.self_attn.o_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        s = plan[name]
        assert torch.equal(params[name].detach(), base[name].index_select(1, s.cols))


@pytest.mark.parametrize("indices", [(0, 1, 2, 3), (1, 3)])
def test_a_round_of_width_shards_moves_its_coordinates_and_no_others(base, shapes, indices):
    """One outer step from shards `indices` (e.g. a rolled round): every coordinate some shard
    trained moves, every other one stays bitwise equal."""
    deltas, masks = [], []
    for k, i in enumerate(indices):
        spec = ShardSpec("width", i, 4)
        model, plan = extract(base, spec, "tiny", VOCAB)
        start = sub_state(model)
        train_inner(model, tokens(10 + k), recipe(3))
        deltas.append(delta_to_full(pseudo_gradient(start, model), plan, shapes))
        masks.append(shard_mask(spec, "tiny", VOCAB, shapes))
    new = apply_outer_step(base, coverage_mean(deltas, masks), 1.0)
    covered_n = moved_n = 0
    for name in shapes:
        covered = torch.zeros(shapes[name], dtype=torch.bool)
        for m in masks:
            covered |= m[name]
        assert torch.equal(new[name][~covered], base[name][~covered]), name
        covered_n += int(covered.sum())
        moved_n += int((new[name] != base[name]).sum())
    assert moved_n > 0.9 * covered_n
    if len(indices) == 4:
        assert covered_n == sum(t.numel() for t in base.values())


def small_shapes() -> dict[str, tuple[int, ...]]:
    from transformers import LlamaForCausalLM
    from template.training.model import PRESETS, llama_config
    with torch.device("meta"):
        m = LlamaForCausalLM(llama_config(PRESETS["small"], 8192))
    return {n: tuple(p.shape) for n, p in m.named_parameters()}


@pytest.mark.parametrize("scheme", ["layers", "width"])
def test_quarter_shards_train_about_a_quarter_of_the_parameters(scheme):
    shapes = small_shapes()  # tiny has too few blocks to balance layer ranges
    fracs = [trained_fraction(ShardSpec(scheme, i, 4), "small", 8192, shapes) for i in range(4)]
    assert all(0.18 <= f <= 0.32 for f in fracs), fracs


def test_shard_model_has_gradients_exactly_for_its_mask(base, shapes):
    for scheme in ("layers", "width"):
        spec = ShardSpec(scheme, 0, 4)
        model, _ = extract(base, spec, "tiny", VOCAB)
        n_grad = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_mask = sum(int(m.sum()) for m in shard_mask(spec, "tiny", VOCAB, shapes).values())
        assert n_grad == n_mask


def test_width_shard_holds_optimizer_state_for_its_parameters_only(base):
    model, _ = extract(base, ShardSpec("width", 0, 4), "tiny", VOCAB)
    n_model = sum(p.numel() for p in model.parameters()) + \
        sum(b.numel() for b in model.buffers() if b.dtype.is_floating_point and b.ndim == 2)
    n_grad = sum(p.numel() for p in model.parameters() if p.requires_grad)
    full = sum(t.numel() for t in base.values())
    assert n_grad < 0.3 * full
    assert n_model < 0.75 * full  # the sub-model itself is smaller (sliced heads and FFN)


def test_width_shards_of_a_round_cover_every_coordinate(shapes):
    masks = [shard_mask(ShardSpec("width", i, 4), "tiny", VOCAB, shapes) for i in range(4)]
    for name in shapes:
        covered = torch.zeros(shapes[name], dtype=torch.bool)
        for m in masks:
            covered |= m[name]
        assert covered.all(), name


def test_width_sub_model_starts_close_to_the_full_model(base):
    full = build_model("tiny", VOCAB, seed=0, device="cpu")
    model, _ = extract(base, ShardSpec("width", 1, 4), "tiny", VOCAB)
    x = tokens(1)
    loss_full = float(per_sequence_loss(full, x).mean())
    loss_sub = float(per_sequence_loss(model, x).mean())
    assert abs(loss_sub - loss_full) < 0.05  # inverted-dropout scaling keeps it unbiased


def test_coverage_mean_averages_each_coordinate_over_its_trainers():
    m1 = {"w": torch.tensor([True, True, False])}
    m2 = {"w": torch.tensor([False, True, True])}
    d1 = {"w": torch.tensor([1.0, 2.0, 0.0])}
    d2 = {"w": torch.tensor([0.0, 4.0, 6.0])}
    out = coverage_mean([d1, d2], [m1, m2])
    assert torch.equal(out["w"], torch.tensor([1.0, 3.0, 6.0]))


def test_bad_spec_is_rejected_with_a_reason():
    with pytest.raises(ValueError, match="out of range"):
        ShardSpec("width", 4, 4)
    with pytest.raises(ValueError, match="unknown shard scheme"):
        ShardSpec("rows", 0, 2)
