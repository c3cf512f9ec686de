"""Anyone holding a round record and the contributions it names reproduces the checkpoint hash;
a non-lead validator does so every round before it adopts the lead's checkpoint."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from types import SimpleNamespace

import pydantic
import pytest

from protocol.limits import MAX_CONTRIBUTION_BYTES
from protocol.messages import UnitOfWork
from protocol.payload import decode_tensors, encode_tensors
from template.audit.lead_check import check_lead_round, parse_record
from template.audit.replay import ReplayError, replay, replay_from_state_dir
from template.audit.round_record import RoundRecord, append_record
from template.validation.round import aggregate_in_arrival_order
from template.training.checkpoint import save_checkpoint, state_hash
from template.training.compression import shapes_of
from template.training.outer_step import apply_outer_step
from template.validation.unit_merge import merge_units
from template.validation import contribution
from template.validation.contribution import MISMATCH
from tests.test_units_of_work import VOCAB, base_state, score_mixed_round, workload  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def scored_round(workload, base_state, tmp_path_factory):  # noqa: F811
    """Three whole-model and two width-shard contributions, scored: (received, reports, accepted)."""
    shard = UnitOfWork(kind="shard", scheme="width", index=1, count=2)
    return score_mixed_round(workload, base_state, tmp_path_factory.mktemp("lead"),
                             ["//replay1", "//replay2", "//replay3"], ["//rshard4", "//rshard5"], shard, b"\x03")


@pytest.fixture(scope="module")
def lead_round(workload, scored_round, base_state):  # noqa: F811
    received, reports, accepted = scored_round
    units = {r.hotkey: r.unit for r in received}
    order, merged = aggregate_in_arrival_order(accepted, reports, units, "tiny", VOCAB)
    assert merged is not None
    new_hash = state_hash(apply_outer_step(base_state, merged, workload.recipe.outer_lr))
    record = RoundRecord(netuid=1, round_index=4, start_block=40, seed="00" * 32, eval_block=61,
                         base_checkpoint=state_hash(base_state), new_checkpoint=new_hash,
                         recipe=workload.recipe.model_dump(),
                         units={hk: u.label for hk, u in units.items()},
                         contributions={r.hotkey: hashlib.sha256(r.body).hexdigest() for r in received},
                         accepted=order)
    return record, {r.hotkey: r.body for r in received}


def test_replay_reproduces_the_leads_checkpoint_hash(base_state, lead_round):  # noqa: F811
    record, bodies = lead_round
    assert replay(record, base_state, bodies, "tiny", VOCAB) == record.new_checkpoint


def test_replay_applies_the_recorded_coldkey_cap(base_state, lead_round, scored_round):  # noqa: F811
    """Two of the three whole-model miners share a coldkey: together they weigh half, not two
    thirds (two coldkeys in the unit); the record binds that."""
    record, bodies = lead_round
    full = [hk for hk in record.accepted if record.units[hk] == "full"]
    coldkeys = {hk: ("sybil" if hk in full[:2] else hk) for hk in record.accepted}
    capped = dataclasses.replace(record, coldkeys=coldkeys)
    capped.new_checkpoint = replay(capped, base_state, bodies, "tiny", VOCAB)
    assert capped.new_checkpoint != record.new_checkpoint  # the cap changed the merge
    received, reports, accepted = scored_round
    order, merged = aggregate_in_arrival_order(accepted, reports, {r.hotkey: r.unit for r in received}, "tiny",
                                               VOCAB, coldkeys=coldkeys)
    assert state_hash(apply_outer_step(base_state, merged, 1.0)) == capped.new_checkpoint  # lead == replay


def test_replay_applies_the_recorded_collusion_group_weights(base_state, lead_round, scored_round):  # noqa: F811
    """Two whole-model miners of one coldkey scored as one collusion group share one
    contribution's weight (3/4 and 1/4 of it, beside the third miner's whole one: the coldkey cap
    of 1/2 does not bind); the record keeps their shares and the replay merges with them, as the
    lead did."""
    record, bodies = lead_round
    received, reports, accepted = scored_round
    full = [hk for hk in record.accepted if record.units[hk] == "full"]
    shares = {full[0]: 0.75, full[1]: 0.25}
    coldkeys = {hk: ("group" if hk in shares else hk) for hk in record.accepted}
    grouped = {hk: dataclasses.replace(r, merge_weight=shares.get(hk, 1.0)) for hk, r in reports.items()}
    order, merged = aggregate_in_arrival_order(accepted, grouped, {r.hotkey: r.unit for r in received}, "tiny", VOCAB,
                                               coldkeys=coldkeys)
    _, unweighted = aggregate_in_arrival_order(accepted, reports, {r.hotkey: r.unit for r in received}, "tiny",
                                               VOCAB, coldkeys=coldkeys)
    weighted = dataclasses.replace(record, weights=shares, coldkeys=coldkeys,
                                   new_checkpoint=state_hash(apply_outer_step(base_state, merged, 1.0)))
    assert weighted.new_checkpoint != state_hash(apply_outer_step(base_state, unweighted, 1.0))
    assert weighted.new_checkpoint != record.new_checkpoint  # the shares changed the merge...
    assert replay(weighted, base_state, bodies, "tiny", VOCAB) == weighted.new_checkpoint  # lead == replay
    with pytest.raises(ReplayError, match="merge weight"):
        replay(dataclasses.replace(record, weights={full[0]: 1.5}), base_state, bodies, "tiny", VOCAB)


def test_replay_refuses_a_contribution_that_is_not_the_recorded_one(base_state, lead_round):  # noqa: F811
    record, bodies = lead_round
    victim = record.accepted[0]
    tampered = dict(bodies, **{victim: bodies[victim][:-1] + bytes([bodies[victim][-1] ^ 1])})
    with pytest.raises(ReplayError, match="does not match the record's hash"):
        replay(record, base_state, tampered, "tiny", VOCAB)


def test_replay_from_a_validators_state_dir(base_state, lead_round, tmp_path):  # noqa: F811
    record, bodies = lead_round
    save_checkpoint(tmp_path / "checkpoints" / f"{record.base_checkpoint}.safetensors", base_state)
    append_record(tmp_path / "rounds.jsonl", record)
    folder = tmp_path / "archive" / "round-4"
    folder.mkdir(parents=True)
    for hotkey in record.accepted:
        (folder / f"{hotkey}.safetensors").write_bytes(bodies[hotkey])
    got_record, got = replay_from_state_dir(tmp_path, 4, "tiny", VOCAB)
    assert got == got_record.new_checkpoint == record.new_checkpoint


def check(record, committed, base_state, bodies, round_index=4):  # noqa: F811
    held = {state_hash(base_state): base_state}
    return check_lead_round(record, committed, round_index, state_hash(base_state), held.get, bodies, "tiny", VOCAB)


def test_follower_verifies_the_leads_committed_round_and_gets_its_checkpoint(base_state, lead_round):  # noqa: F811
    record, bodies = lead_round
    result = check(record, {record.digest()}, base_state, bodies)
    assert result.verified, result.detail
    assert state_hash(result.state) == record.new_checkpoint != record.base_checkpoint


def test_follower_takes_only_the_record_the_lead_committed(base_state, lead_round):  # noqa: F811
    record, bodies = lead_round
    result = check(record, {"ab" * 32}, base_state, bodies)
    assert result.status == "unverifiable" and "committed on chain" in result.detail and result.state is None


def test_follower_flags_a_checkpoint_the_leads_own_record_does_not_produce(base_state, lead_round):  # noqa: F811
    record, bodies = lead_round
    dropped = dataclasses.replace(record, accepted=record.accepted[1:])  # one merged update not declared
    result = check(dropped, {dropped.digest()}, base_state, bodies)
    assert result.status == "mismatch" and "the lead published" in result.detail
    forged = dataclasses.replace(record, new_checkpoint="cd" * 32)
    assert check(forged, {forged.digest()}, base_state, bodies).status == "mismatch"
    assert check(record, {record.digest()}, base_state, bodies, round_index=5).status == "mismatch"


def _stepped(record, base_state, bodies, recipe):  # noqa: F811
    """The record as a lead that merged with `recipe` would have written it."""
    units = {hk: UnitOfWork.from_label(label) for hk, label in record.units.items()}
    opened = {hk: contribution.open_contribution(bodies[hk], contribution.Expected(
        hk, record.netuid, record.round_index, record.base_checkpoint, units[hk]), shapes_of(base_state),
        recipe.compression) for hk in record.accepted}
    _, merged = merge_units(record.accepted, opened, {hk: units[hk] for hk in record.accepted}, "tiny", VOCAB)
    return dataclasses.replace(record, recipe=recipe.model_dump(),
                               new_checkpoint=state_hash(apply_outer_step(base_state, merged, recipe.outer_lr)))


def test_follower_takes_a_measured_outer_step_and_nothing_else_from_the_lead(base_state, lead_round, workload):  # noqa: F811
    record, bodies = lead_round
    plan_recipe = workload.recipe
    half = _stepped(record, base_state, bodies, plan_recipe.model_copy(update={"outer_lr": plan_recipe.outer_lr / 2}))
    follower = check_lead_round(half, {half.digest()}, 4, state_hash(base_state), {state_hash(base_state): base_state}.get,
                                bodies, "tiny", VOCAB, plan_recipe)
    assert follower.verified, follower.detail
    for change, why in (({"outer_lr": plan_recipe.outer_lr * 0.3}, "outer lr"),
                        ({"outer_lr": plan_recipe.outer_lr * 2}, "outer lr"),
                        ({"inner_steps": plan_recipe.inner_steps + 1}, "not the round's")):
        other = _stepped(record, base_state, bodies, plan_recipe.model_copy(update=change))
        result = check_lead_round(other, {other.digest()}, 4, state_hash(base_state),
                                  {state_hash(base_state): base_state}.get, bodies, "tiny", VOCAB, plan_recipe)
        assert result.status == "mismatch" and why in result.detail, (change, result.detail)
        assert check(other, {other.digest()}, base_state, bodies).verified  # it replays: only the recipe is wrong


def test_follower_cannot_check_without_the_same_bytes(base_state, lead_round):  # noqa: F811
    record, bodies = lead_round
    victim = record.accepted[0]
    missing = {hk: b for hk, b in bodies.items() if hk != victim}
    result = check(record, {record.digest()}, base_state, missing)
    assert result.status == "unverifiable" and "no bytes here" in result.detail
    other = dict(bodies, **{victim: bodies[victim] + b"\x00"})  # the miner answered this validator differently
    result = check(record, {record.digest()}, base_state, other)
    assert result.status == "unverifiable" and "other bytes" in result.detail


def recorded(record, bodies, hotkey, body):
    """The record and bodies with `hotkey`'s bytes replaced by `body`, and the record naming them
    (a lead that accepted and recorded those very bytes)."""
    contributions = dict(record.contributions, **{hotkey: hashlib.sha256(body).hexdigest()})
    return dataclasses.replace(record, contributions=contributions), dict(bodies, **{hotkey: body})


def test_replay_opens_each_contribution_as_scoring_does(base_state, lead_round):  # noqa: F811
    """Bytes the record names, but for another round: scoring would have refused them, so the
    replay does, and a follower calls the lead's checkpoint unexplained."""
    record, bodies = lead_round
    victim = record.accepted[0]
    tensors, meta = decode_tensors(bodies[victim], MAX_CONTRIBUTION_BYTES)
    forged, forged_bodies = recorded(record, bodies, victim, encode_tensors(tensors, dict(meta, round_index=3)))
    with pytest.raises(ReplayError, match="round 3 expected 4") as raised:
        replay(forged, base_state, forged_bodies, "tiny", VOCAB)
    assert raised.value.rejected[victim].kind == MISMATCH and not raised.value.missing
    result = check(forged, {forged.digest()}, base_state, forged_bodies)
    assert result.status == "mismatch" and "do not replay" in result.detail and "round 3 expected 4" in result.detail
    garbage, garbage_bodies = recorded(record, bodies, victim, b"\x00" * 64)
    result = check(garbage, {garbage.digest()}, base_state, garbage_bodies)
    assert result.status == "mismatch" and "malformed payload" in result.detail


def test_replay_decodes_with_the_records_compression(base_state, lead_round):  # noqa: F811
    record, bodies = lead_round
    recipe = record.training_recipe
    other = recipe.model_copy(update={"compression": recipe.compression.model_copy(update={"topk": recipe.compression.topk // 2})})
    moved = dataclasses.replace(record, recipe=other.model_dump())
    result = check(moved, {moved.digest()}, base_state, bodies)
    assert result.status == "mismatch" and "malformed update" in result.detail


def test_follower_hashes_each_accepted_contribution_once(base_state, lead_round, monkeypatch):  # noqa: F811
    record, bodies = lead_round
    hashed: dict[bytes, int] = {}

    def counting(data=b""):
        hashed[bytes(data)] = hashed.get(bytes(data), 0) + 1
        return hashlib.sha256(data)

    monkeypatch.setattr(contribution, "hashlib", SimpleNamespace(sha256=counting))
    assert check(record, {record.digest()}, base_state, bodies).verified
    assert sorted(hashed.values()) == [1] * len(record.accepted)
    assert set(hashed) == {bodies[hk] for hk in record.accepted}


def test_round_record_from_json_keeps_its_digest_and_refuses_malformed_ones(lead_round):
    record, _ = lead_round
    assert parse_record(json.loads(record.canonical_json())).digest() == record.digest()
    broken = json.loads(record.canonical_json())
    broken["accepted"] = "everyone"
    with pytest.raises(pydantic.ValidationError):
        parse_record(broken)
    with pytest.raises(pydantic.ValidationError):
        parse_record({"netuid": 1})
