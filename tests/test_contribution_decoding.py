"""What a validator does with the bytes a miner sent: every problem is a reason, never a crash."""
from __future__ import annotations

import pytest
import torch

from protocol.messages import ContributionMeta, UnitOfWork
from protocol.payload import encode_tensors
from template.validation.round import Received, RoundContext, decode_contribution
from template.training.compression import CompressionConfig, compress

HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
BASE = "cd" * 32
SHAPES = {"a.weight": (64, 64), "b.bias": (10,)}
CFG = CompressionConfig(topk=32)
CTX = RoundContext(netuid=3, round_index=7, base_checkpoint=BASE, eval_seed=b"\x01" * 32)


def body(**meta_overrides) -> bytes:
    delta = {name: torch.randn(shape, generator=torch.Generator().manual_seed(1)) for name, shape in SHAPES.items()}
    update, _ = compress(delta, None, CFG)
    meta = dict(netuid=3, round_index=7, base_checkpoint=BASE, hotkey=HOTKEY, tokens_trained=1, inner_steps=1,
                loss_first=1.0, loss_last=0.5, train_seconds=1.0, compression="topk")
    meta.update(meta_overrides)
    return encode_tensors(update.to_tensors(), ContributionMeta(**meta).model_dump(mode="json"))


def decode(data: bytes | None, unit: UnitOfWork = UnitOfWork()):
    return decode_contribution(Received(uid=1, hotkey=HOTKEY, assigned=[1], body=data, arrival_index=0, unit=unit),
                               CTX, SHAPES, CFG)


def test_well_formed_contribution_decodes_to_dense_tensors():
    delta, problem = decode(body())
    assert problem is None
    assert {name: tuple(t.shape) for name, t in delta.items()} == SHAPES


@pytest.mark.parametrize("overrides, reason", [
    ({"round_index": 6}, "round 6 expected 7"),
    ({"base_checkpoint": "ef" * 32}, "trained from checkpoint efefefefefef"),
    ({"netuid": 4}, "netuid 4 expected 3"),
    ({"hotkey": "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"}, "metadata names hotkey"),
])
def test_contribution_for_another_round_base_subnet_or_sender_is_refused(overrides, reason):
    delta, problem = decode(body(**overrides))
    assert delta is None and problem.startswith(reason)


def test_garbage_bytes_are_refused_with_a_reason():
    delta, problem = decode(b"\x00" * 64)
    assert delta is None and problem.startswith("malformed payload")


def test_missing_metadata_is_refused():
    update, _ = compress({n: torch.ones(s) for n, s in SHAPES.items()}, None, CFG)
    delta, problem = decode(encode_tensors(update.to_tensors()))
    assert delta is None and problem.startswith("malformed metadata")


def test_tampered_tensors_are_refused():
    update, _ = compress({n: torch.ones(s) for n, s in SHAPES.items()}, None, CFG)
    tensors = update.to_tensors()
    tensors.pop(next(iter(tensors)))
    meta = ContributionMeta(netuid=3, round_index=7, base_checkpoint=BASE, hotkey=HOTKEY, tokens_trained=1,
                            inner_steps=1, loss_first=1.0, loss_last=0.5, train_seconds=1.0, compression="x")
    delta, problem = decode(encode_tensors(tensors, meta.model_dump(mode="json")))
    assert delta is None and problem.startswith("malformed update")


def test_nothing_received_keeps_the_failure_reason():
    delta, problem = decode_contribution(Received(uid=1, hotkey=HOTKEY, assigned=[1], body=None, arrival_index=0,
                                                  failure="unreachable: ConnectError"), CTX, SHAPES, CFG)
    assert delta is None and problem == "unreachable: ConnectError"
