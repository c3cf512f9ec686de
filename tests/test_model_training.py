"""Model presets, inner loop, pseudo-gradient and loss evaluation on the tiny preset."""
import pytest
import torch

from template.training.checkpoint import state_hash
from template.training.evaluation import applied_delta, per_sequence_loss
from template.training.inner_loop import lr_at, pseudo_gradient, train_inner
from template.training.model import (
    PRESETS, build_model, load_model_state, load_pretrained_model, model_state, num_params,
)
from template.training.presets import PRESET_SETTINGS

VOCAB = 300


def _recipe(steps: int, batch_size: int, lr: float, warmup: int = 0, max_passes: float = 1000.0):
    return PRESET_SETTINGS["tiny"].recipe.with_overrides(inner_steps=steps, batch_size=batch_size,
                                                         learning_rate=lr, warmup_steps=warmup,
                                                         max_passes=max_passes)


def _pages(n: int, seed: int, t: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Repeating patterns: learnable in a few steps, and different per seed.
    base = torch.randint(0, VOCAB, (n, 8), generator=g)
    return base.repeat(1, t // 8)


@pytest.fixture
def model():
    torch.set_num_threads(1)
    return build_model("tiny", VOCAB, seed=0, device="cpu")


def test_presets_cover_cpu_to_1b():
    assert {"tiny", "small", "124m", "1b"} <= set(PRESETS)


def test_same_seed_gives_same_weights():
    a, b = build_model("tiny", VOCAB, 7, "cpu"), build_model("tiny", VOCAB, 7, "cpu")
    assert state_hash(model_state(a)) == state_hash(model_state(b))
    assert state_hash(model_state(a)) != state_hash(model_state(build_model("tiny", VOCAB, 8, "cpu")))


def test_small_preset_is_10_to_20m_params():
    with torch.device("meta"):
        n = num_params(build_model("small", 8192, 0, "meta"))
    assert 10e6 <= n <= 20e6, n


def test_pretrained_model_loads_from_save_pretrained(tmp_path, model):
    model.save_pretrained(str(tmp_path / "m"))
    loaded = load_pretrained_model(str(tmp_path / "m"), device="cpu")
    assert state_hash(model_state(loaded)) == state_hash(model_state(model))


def test_model_state_round_trips(model):
    state = model_state(model)
    other = build_model("tiny", VOCAB, seed=1, device="cpu")
    load_model_state(other, state)
    assert state_hash(model_state(other)) == state_hash(state)
    with pytest.raises(KeyError):
        load_model_state(other, {k: v for k, v in list(state.items())[1:]})


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 20, 1.0, 4, 0.1) for s in range(20)]
    assert lrs[0] == 0.25 and lrs[3] == 1.0 and lrs[4] == 1.0
    assert abs(lrs[-1] - 0.1) < 1e-9 and all(a >= b for a, b in zip(lrs[3:], lrs[4:]))


def test_lr_schedule_anneals_by_time_when_time_runs_out_first():
    """A miner that will hit the deadline after 10 of its 100 allowed steps still anneals: the
    decay follows the share of the training time used when that is further along."""
    assert lr_at(10, 100, 1.0, 0, 0.1, time_spent=0.0) > 0.9
    assert abs(lr_at(10, 100, 1.0, 0, 0.1, time_spent=1.0) - 0.1) < 1e-9
    assert abs(lr_at(10, 100, 1.0, 0, 0.1, time_spent=0.5) - 0.55) < 1e-9


def test_the_inner_loop_trains_until_the_deadline_and_begins_no_step_that_would_end_past_it(model):
    import time

    pages = _pages(8, seed=4)
    deadline = time.time() + 1.5
    stats = train_inner(model, pages, _recipe(10_000, 4, 1e-3), seed=0, deadline=deadline)
    ended = time.time()
    step = stats.seconds / stats.steps
    assert 1 < stats.steps < 10_000  # the deadline, not the step budget, ended it
    assert ended <= deadline + 2 * step, (ended - deadline, step)  # one step's jitter at most
    assert ended >= deadline - 3 * step  # and it used the time it had


def test_the_inner_loop_stops_after_max_passes_over_its_pages_even_with_time_left(model):
    import time

    stats = train_inner(model, _pages(8, seed=4), _recipe(10_000, 4, 1e-3, max_passes=3), seed=0,
                        deadline=time.time() + 60)
    assert stats.steps == 3 * 8 // 4 and stats.tokens == 6 * 4 * 32
    assert stats.seconds < 30  # it did not wait for the deadline


def test_inner_loop_helps_its_own_pages_more_than_others(model):
    own, other = _pages(8, seed=1), _pages(8, seed=2)
    before_own, before_other = per_sequence_loss(model, own), per_sequence_loss(model, other)
    stats = train_inner(model, own, _recipe(20, 4, 3e-3, warmup=2), seed=0)
    assert stats.loss_last < stats.loss_first and stats.tokens == 20 * 4 * 32
    gain_own = (before_own - per_sequence_loss(model, own)).mean()
    gain_other = (before_other - per_sequence_loss(model, other)).mean()
    assert gain_own > gain_other + 0.5


def test_inner_loop_is_reproducible():
    pages = _pages(8, seed=3)
    states = []
    for _ in range(2):
        m = build_model("tiny", VOCAB, 0, "cpu")
        train_inner(m, pages, _recipe(3, 4, 1e-3), seed=5)
        states.append(state_hash(model_state(m)))
    assert states[0] == states[1]


def test_pseudo_gradient_is_base_minus_trained_for_trainable_params(model):
    base = model_state(model)
    model.model.embed_tokens.weight.requires_grad_(False)
    train_inner(model, _pages(4, seed=4), _recipe(2, 2, 1e-2))
    delta = pseudo_gradient(base, model)
    assert "model.embed_tokens.weight" not in delta
    trained = model_state(model)
    for name, d in delta.items():
        assert d.dtype == torch.float32
        torch.testing.assert_close(d, base[name] - trained[name], rtol=0, atol=0)
    assert any(d.abs().sum() > 0 for d in delta.values())


def test_per_sequence_loss_shape_and_mode(model):
    model.train()
    losses = per_sequence_loss(model, _pages(5, seed=5), batch_size=2)
    assert losses.shape == (5,) and torch.isfinite(losses).all() and model.training
    assert abs(float(losses.mean()) - torch.log(torch.tensor(float(VOCAB)))) < 0.5


def test_applied_delta_applies_then_restores_exactly(model):
    before = state_hash(model_state(model))
    name, p = next(iter(model.named_parameters()))
    delta = {name: torch.randn_like(p)}
    expected = p.detach().clone() - 0.5 * delta[name]
    with applied_delta(model, delta, scale=0.5):
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=0)
    assert state_hash(model_state(model)) == before
    with pytest.raises(RuntimeError), applied_delta(model, delta, scale=1.0):
        raise RuntimeError("scoring failed")
    assert state_hash(model_state(model)) == before


def test_the_inner_optimizer_state_carries_over_between_calls():
    """A miner that keeps training the same unit continues from its AdamW moments (DiLoCo's
    workers keep theirs); without them a round starts from zero moments."""
    pages = _pages(8, seed=9)
    carried, fresh = build_model("tiny", VOCAB, seed=0, device="cpu"), build_model("tiny", VOCAB, seed=0, device="cpu")
    first = train_inner(carried, pages, _recipe(3, 4, 1e-2), seed=1)
    train_inner(fresh, pages, _recipe(3, 4, 1e-2), seed=1)
    steps = {float(s["step"]) for s in first.optimizer_state["state"].values()}
    assert steps == {3.0}
    second = train_inner(carried, pages, _recipe(2, 4, 1e-2), seed=2,
                         optimizer_state=first.optimizer_state)
    assert {float(s["step"]) for s in second.optimizer_state["state"].values()} == {5.0}
    train_inner(fresh, pages, _recipe(2, 4, 1e-2), seed=2)
    moved = [n for (n, p), q in zip(carried.named_parameters(), fresh.parameters()) if not torch.allclose(p, q)]
    assert moved  # the carried moments changed the steps taken
