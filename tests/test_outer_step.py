"""Outer step: theta - lr * delta, untouched tensors carried over; Nesterov state round-trips."""
import pytest
import torch

from bench.nesterov import NesterovOuterOptimizer
from template.training.checkpoint import checkpoint_bytes, load_checkpoint_bytes, state_hash
from template.training.outer_step import apply_outer_step


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
