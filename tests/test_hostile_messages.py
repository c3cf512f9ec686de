"""Crafted work orders: out-of-range integers and non-finite deadlines are refused at validation
(the miner answers 400), and the round seed refuses indices it cannot pack."""
from __future__ import annotations

import json
import math
import time

import pytest
from pydantic import ValidationError

from protocol.limits import MAX_ROUND_OR_BLOCK
from protocol.messages import CheckpointInfo, ContributionMeta, TrainAccepted, TrainRequest
from template.training.assignment import round_seed
from template.training.presets import PRESET_SETTINGS

HASH = "ab" * 32
BLOCK = "0x" + "cd" * 32


def order_fields(**overrides) -> dict:
    fields = dict(netuid=7, round_index=3, round_block=300, seed=HASH, base_checkpoint=HASH, dataset=HASH,
                  model_preset="tiny", checkpoint_url="http://10.0.0.1:8091/v1/checkpoint/" + HASH,
                  pages=[1, 2, 3], recipe=PRESET_SETTINGS["tiny"].recipe.model_dump(mode="json"),
                  deadline_block=340, deadline_unix=time.time() + 60)
    fields.update(overrides)
    return fields


def test_a_plain_order_validates():
    order = TrainRequest(**order_fields(round_index=MAX_ROUND_OR_BLOCK, round_block=MAX_ROUND_OR_BLOCK,
                                        deadline_block=MAX_ROUND_OR_BLOCK))
    assert order.round_index == MAX_ROUND_OR_BLOCK
    assert len(round_seed(BLOCK, order.round_index)) == 32


@pytest.mark.parametrize("field", ["round_index", "round_block", "deadline_block"])
@pytest.mark.parametrize("value", [2**63, 2**64, 2**64 + 1, 10**30, -1])
def test_out_of_range_integers_are_refused(field, value):
    with pytest.raises(ValidationError, match=field):
        TrainRequest(**order_fields(**{field: value}))
    body = json.dumps(order_fields(**{field: value}))  # what the miner's /v1/train parses
    with pytest.raises(ValidationError, match=field):
        TrainRequest.model_validate_json(body)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_deadline_is_refused(value):
    with pytest.raises(ValidationError, match="deadline_unix"):
        TrainRequest(**order_fields(deadline_unix=value))


@pytest.mark.parametrize("literal", ["Infinity", "NaN", "1e999"])
def test_non_finite_deadline_in_json_is_refused(literal):
    body = json.dumps(order_fields(deadline_unix=1.5))
    assert body.count("1.5") == 1
    body = body.replace("1.5", literal)
    with pytest.raises(ValidationError, match="deadline_unix"):
        TrainRequest.model_validate_json(body)


def test_round_indices_in_replies_and_metadata_are_bounded():
    with pytest.raises(ValidationError):
        TrainAccepted(round_index=2**64, status="accepted")
    with pytest.raises(ValidationError):
        CheckpointInfo(round_index=2**64, sha256=HASH, size_bytes=1, model_preset="tiny", vocab_size=8)
    assert CheckpointInfo(round_index=-1, sha256=HASH, size_bytes=1, model_preset="tiny", vocab_size=8)
    with pytest.raises(ValidationError):
        ContributionMeta(netuid=1, round_index=2**64, base_checkpoint=HASH, hotkey="5" * 48, tokens_trained=1,
                         inner_steps=1, loss_first=1.0, loss_last=1.0, train_seconds=1.0, compression="x")


@pytest.mark.parametrize("index", [-1, 2**64, 2**70, 1.0, "3", None])
def test_round_seed_refuses_indices_it_cannot_pack(index):
    with pytest.raises(ValueError):
        round_seed(BLOCK, index)


def test_round_seed_packs_the_whole_unsigned_range():
    assert round_seed(BLOCK, 2**64 - 1) != round_seed(BLOCK, 0)
