"""Checkpoints: deterministic bytes and hashes; only safetensors loads."""
import pickle

import pytest
import torch

from template.training.checkpoint import (
    CheckpointError, checkpoint_bytes, load_checkpoint, load_checkpoint_bytes, save_checkpoint,
    state_hash,
)


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"b.weight": torch.randn(4, 3, generator=g), "a.bias": torch.randn(3, generator=g),
            "c.half": torch.randn(2, 2, generator=g).to(torch.bfloat16)}


def test_equal_states_hash_equal_regardless_of_key_order():
    a = _state()
    b = {k: a[k].clone() for k in reversed(list(a))}
    assert state_hash(a) == state_hash(b)
    assert checkpoint_bytes(a) == checkpoint_bytes(b)


def test_one_bit_change_changes_the_hash():
    a, b = _state(), _state()
    b["b.weight"].view(-1).view(torch.int32)[0] ^= 1
    assert state_hash(a) != state_hash(b)


def test_dtype_and_shape_are_part_of_the_hash():
    a = {"x": torch.zeros(4)}
    assert state_hash(a) != state_hash({"x": torch.zeros(2, 2)})
    assert state_hash(a) != state_hash({"x": torch.zeros(4, dtype=torch.int32)})


def test_bytes_round_trip_bit_for_bit():
    state = _state()
    loaded = load_checkpoint_bytes(checkpoint_bytes(state))
    assert state_hash(loaded) == state_hash(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_tied_tensors_are_saved(tmp_path):
    w = torch.randn(3, 3)
    state = {"embed": w, "head": w}  # aliases (tied weights) must not break saving
    h = save_checkpoint(tmp_path / "ck.safetensors", state)
    loaded = load_checkpoint(tmp_path / "ck.safetensors")
    assert state_hash(loaded) == h and torch.equal(loaded["head"], w)


@pytest.mark.parametrize("garbage", [b"", b"1234567", b"\xff" * 64,
                                     (10).to_bytes(8, "little") + b"not json!!",
                                     pickle.dumps({"x": torch.zeros(2)})])
def test_garbage_is_rejected(garbage):
    with pytest.raises(CheckpointError):
        load_checkpoint_bytes(garbage)


def test_truncated_checkpoint_is_rejected():
    data = checkpoint_bytes(_state())
    with pytest.raises(CheckpointError):
        load_checkpoint_bytes(data[:-5])
