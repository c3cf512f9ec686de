"""Outer step: theta - lr * delta, untouched tensors carried over; Nesterov state round-trips."""
import pytest
import torch

from bench.nesterov import NesterovOuterOptimizer
from template.training.checkpoint import checkpoint_bytes, load_checkpoint_bytes, state_hash
from template.training.outer_step import apply_outer_step, measured_outer_step


def _base():
    return {"w": torch.ones(3, 2), "b": torch.zeros(2)}


def test_outer_step_subtracts_the_scaled_delta():
    new = apply_outer_step(_base(), {"w": torch.full((3, 2), 0.5)}, outer_lr=1.0)
    assert torch.equal(new["w"], torch.full((3, 2), 0.5))
    assert torch.equal(new["b"], torch.zeros(2))  # no delta: carried over
    half = apply_outer_step(_base(), {"w": torch.full((3, 2), 0.5)}, outer_lr=0.5)
    assert torch.equal(half["w"], torch.full((3, 2), 0.75))


def test_outer_step_does_not_mutate_the_base_and_is_reproducible():
    base, delta = _base(), {"w": torch.randn(3, 2), "b": torch.randn(2)}
    a = apply_outer_step(base, delta)
    b = apply_outer_step(_base(), {k: v.clone() for k, v in delta.items()})
    assert torch.equal(base["w"], torch.ones(3, 2))
    assert state_hash(a) == state_hash(b)


def test_outer_step_rejects_unknown_names_and_shapes():
    with pytest.raises(KeyError):
        apply_outer_step(_base(), {"x": torch.zeros(1)})
    with pytest.raises(ValueError, match="shape"):
        apply_outer_step(_base(), {"w": torch.zeros(2, 3)})


def test_nesterov_matches_torch_sgd():
    base, deltas = _base(), [{"w": torch.randn(3, 2)} for _ in range(3)]
    param = torch.nn.Parameter(base["w"].clone())
    sgd = torch.optim.SGD([param], lr=0.7, momentum=0.9, nesterov=True)
    opt, state = NesterovOuterOptimizer(0.7, 0.9), base
    for d in deltas:
        param.grad = d["w"].clone()
        sgd.step()
        state = opt.step(state, d)
    torch.testing.assert_close(state["w"], param.detach())


def test_nesterov_state_survives_save_and_load():
    opt = NesterovOuterOptimizer()
    state = opt.step(_base(), {"w": torch.randn(3, 2)})
    restored = NesterovOuterOptimizer()
    restored.load_state_dict(load_checkpoint_bytes(checkpoint_bytes(opt.state_dict())))
    d = {"w": torch.randn(3, 2)}
    assert torch.equal(opt.step(state, d)["w"], restored.step(state, d)["w"])


def _distance_to(target: float):
    """A loss whose minimum is at w == target everywhere (a bowl around it)."""
    return lambda state: float((state["w"] - target).pow(2).mean())


def test_the_measured_step_takes_the_fraction_with_the_lowest_loss():
    # base 1, merged delta 1: fraction f lands at w = 1 - f; the bowl's bottom is at 0.5.
    lr, state, losses = measured_outer_step(_base(), {"w": torch.ones(3, 2)}, 1.0, _distance_to(0.5))
    assert lr == 0.5
    assert torch.allclose(state["w"], torch.full((3, 2), 0.5))
    assert sorted(losses) == [0.25, 0.5, 0.75, 1.0] and losses[1.0] > losses[0.5]


def test_the_measured_step_is_a_fraction_of_the_recipes_outer_lr_and_a_tie_takes_the_larger():
    lr, state, _ = measured_outer_step(_base(), {"w": torch.ones(3, 2)}, 0.8, lambda state: 1.0)
    assert lr == 0.8
    assert torch.equal(state["w"], apply_outer_step(_base(), {"w": torch.ones(3, 2)}, 0.8)["w"])


def test_the_measured_step_is_what_a_replay_at_the_recorded_lr_gives():
    delta = {"w": torch.linspace(-1, 1, 6).reshape(3, 2)}
    lr, state, _ = measured_outer_step(_base(), delta, 1.0, _distance_to(0.9))
    assert lr < 1.0
    assert all(torch.equal(state[k], v) for k, v in apply_outer_step(_base(), delta, lr).items())
