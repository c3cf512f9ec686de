"""What a validator does with the bytes a miner sent: every problem is a reason, never a crash,
and one bad contribution never costs the round the others."""
from __future__ import annotations

import hashlib
import math
import json
import struct

import pytest
import torch

from protocol.messages import ContributionMeta, UnitOfWork
from protocol.payload import encode_tensors
from protocol.recipe import Recipe
from template.training.compression import CompressionConfig, compress, shapes_of
from template.training.inner_loop import pseudo_gradient, train_inner
from template.training.model import build_model, load_model_state, model_state
from template.training.pages import make_page_store
from template.validation import contribution
from template.validation.contribution import (HASH, MAX_REASON_CHARS, MISMATCH, PAYLOAD, Expected, Rejected,
                                              open_contribution)
from template.validation.round import Received, RoundContext, decode_contribution, score_contributions
from template.validation.scoring import ScoringConfig

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
    assert shapes_of(delta) == SHAPES


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


EXPECTED = Expected(hotkey=HOTKEY, netuid=3, round_index=7, base_checkpoint=BASE)


def test_open_contribution_checks_the_hash_a_record_names_before_anything_else():
    data = body()
    assert set(open_contribution(data, EXPECTED, SHAPES, CFG)) == set(SHAPES)
    named = Expected(HOTKEY, 3, 7, BASE, sha256=hashlib.sha256(data).hexdigest())
    assert set(open_contribution(data, named, SHAPES, CFG)) == set(SHAPES)
    with pytest.raises(Rejected) as rejected:
        open_contribution(data + b"\x00", named, SHAPES, CFG)
    assert rejected.value.kind == HASH and rejected.value.reason == "does not match the record's hash"
    with pytest.raises(Rejected) as rejected:
        open_contribution(body(round_index=6), EXPECTED, SHAPES, CFG)
    assert rejected.value.kind == MISMATCH


def test_open_contribution_turns_anything_else_into_a_short_rejection():
    with pytest.raises(Rejected) as rejected:
        open_contribution("not bytes", EXPECTED, SHAPES, CFG)  # type: ignore[arg-type]
    assert rejected.value.kind == PAYLOAD and rejected.value.reason.startswith("malformed payload")
    with pytest.raises(Rejected) as rejected:
        open_contribution(body(), EXPECTED, {"a.weight": (64, 64)}, CFG)  # a tensor the model does not have
    assert rejected.value.reason.startswith("malformed update: unknown parameter")
    assert len(Rejected(PAYLOAD, "x" * 10_000).reason) == MAX_REASON_CHARS


# ---------------------------------------------------------------- isolation within a round

VOCAB, PAGE_LEN = 300, 32
HONEST = HOTKEY
CRAFTED = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
ROUND = RoundContext(netuid=3, round_index=7, base_checkpoint=BASE, eval_seed=b"\x05" * 32)
ROUND_CFG = CompressionConfig(topk=512)


@pytest.fixture(scope="module")
def honest_round():
    """A tiny model, pages with a learnable pattern, and one honest contribution trained on them."""
    starts = torch.randint(0, 60, (400, 1), generator=torch.Generator().manual_seed(0))
    pages = make_page_store((starts + torch.arange(PAGE_LEN)) % 60, heldout_fraction=0.1)
    model = build_model("tiny", VOCAB, seed=0, device="cpu")
    base = model_state(model)
    assigned = pages.train_ids[:16]
    recipe = Recipe(inner_steps=8, batch_size=8, learning_rate=3e-3, pages_per_miner=16, compression=ROUND_CFG)
    train_inner(model, pages.pages(assigned), recipe)
    update, _ = compress(pseudo_gradient(base, model), None, ROUND_CFG)
    load_model_state(model, base)
    meta = ContributionMeta(netuid=3, round_index=7, base_checkpoint=BASE, hotkey=HONEST, tokens_trained=1,
                            inner_steps=8, loss_first=1.0, loss_last=0.5, train_seconds=1.0,
                            compression=ROUND_CFG.codec_id)
    return model, base, pages, assigned, encode_tensors(update.to_tensors(), meta.model_dump(mode="json"))


def score_with(honest_round, crafted: dict[str, bytes]):
    """Score a round of the honest contribution and the `crafted` ones (hotkey -> bytes)."""
    model, base, pages, assigned, honest = honest_round
    received = [Received(uid=1, hotkey=HONEST, assigned=assigned, body=honest, arrival_index=0)]
    received += [Received(uid=2 + i, hotkey=hotkey, assigned=pages.train_ids[16 * (i + 1):16 * (i + 2)], body=data,
                          arrival_index=1 + i) for i, (hotkey, data) in enumerate(crafted.items())]
    reports, accepted = score_contributions(model, base, received, ROUND, pages, ROUND_CFG,
                                            ScoringConfig(z_min=0.0, assignment_z_min=-10.0, assignment_first_fail_z=-math.inf), 16, 8)
    assert reports[HONEST].accepted and reports[HONEST].score > 0, reports[HONEST].reason
    assert set(accepted) == {HONEST}
    for hotkey in crafted:
        assert not reports[hotkey].accepted and reports[hotkey].score == 0.0
    return reports


def safetensors_bytes(header: dict, data: bytes = b"\x00" * 4) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def crafted_meta(hotkey: str) -> str:
    return json.dumps(ContributionMeta(netuid=3, round_index=7, base_checkpoint=BASE, hotkey=hotkey,
                                       tokens_trained=1, inner_steps=1, loss_first=1.0, loss_last=0.5,
                                       train_seconds=1.0, compression="x").model_dump(mode="json"))


ENTRY = {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}
DEEP = 200_000


def test_crafted_payloads_are_rejected_with_a_reason_and_the_honest_one_still_scored(honest_round):
    crafted = {
        "metadata-is-a-list": safetensors_bytes({"__metadata__": ["meta"], "t|idx": ENTRY}),
        "metadata-value-is-a-number": safetensors_bytes({"__metadata__": {"meta": 5}, "t|idx": ENTRY}),
        "metadata-nests-200k-deep": safetensors_bytes({"__metadata__": {"meta": "[" * DEEP + "]" * DEEP},
                                                       "t|idx": ENTRY}),
        CRAFTED: safetensors_bytes({"__metadata__": {"meta": crafted_meta(CRAFTED)},  # dtype F8_E8M0, else well formed
                                    "t|idx": dict(ENTRY, dtype="F8_E8M0")}),
    }
    reports = score_with(honest_round, crafted)
    for hotkey in crafted:
        assert reports[hotkey].reason.startswith("payload: malformed payload: "), (hotkey, reports[hotkey].reason)


ERRORS = [AttributeError("'list' object has no attribute 'get'"), TypeError("unhashable type"), KeyError("dtype"),
          RecursionError("maximum recursion depth exceeded"), OverflowError("int too large"), ValueError("bad"),
          MemoryError()]


def test_whatever_the_decoder_raises_stays_with_that_contribution(honest_round, monkeypatch):
    """Isolation does not rest on the payload decoder refusing cleanly: any exception opening one
    contribution is that contribution's rejection."""
    real = contribution.decode_tensors
    crafted = {type(error).__name__: f"crafted {type(error).__name__}".encode() for error in ERRORS}
    raises = {crafted[type(error).__name__]: error for error in ERRORS}

    def decoder(data, max_bytes):
        if data in raises:
            raise raises[data]
        return real(data, max_bytes)

    monkeypatch.setattr(contribution, "decode_tensors", decoder)
    reports = score_with(honest_round, crafted)
    for name in crafted:
        assert reports[name].reason.startswith(f"payload: malformed payload: {name}"), reports[name].reason
