"""The audit-trail check finds each way a validator's trail can stop being whole: a committed
digest with no record, a fork in the line of checkpoints, a round that does not replay."""
from __future__ import annotations

import dataclasses
import json

import pytest

from template.audit.replay import replayed_state
from template.audit.round_record import append_record
from template.audit.trail import REPRODUCED, check_trail, read_committed
from template.training.checkpoint import save_checkpoint, state_hash
from tests.test_replay import lead_round, scored_round  # noqa: F401 (fixtures)
from tests.test_units_of_work import VOCAB, base_state, workload  # noqa: F401 (fixtures)


@pytest.fixture()
def trail(tmp_path, base_state, lead_round):  # noqa: F811
    """Round 4 merges real contributions; round 5 accepts none; round 6 is lost; round 7 accepts none."""
    record, bodies = lead_round
    after_4 = replayed_state(record, base_state, bodies, "tiny", VOCAB)
    for state in (base_state, after_4):
        save_checkpoint(tmp_path / "checkpoints" / f"{state_hash(state)}.safetensors", state)
    archive = tmp_path / "archive" / "round-4"
    archive.mkdir(parents=True)
    for hotkey in record.accepted:
        (archive / f"{hotkey}.safetensors").write_bytes(bodies[hotkey])
    empty = dataclasses.replace(record, accepted=[], base_checkpoint=record.new_checkpoint)
    records = [record, dataclasses.replace(empty, round_index=5), dataclasses.replace(empty, round_index=7)]
    for r in records:
        append_record(tmp_path / "rounds.jsonl", r)
    return tmp_path, records


def test_a_whole_trail_replays_every_round_and_names_its_gaps(trail):
    path, records = trail
    report = check_trail(path, {r.digest() for r in records}, "tiny", VOCAB)
    assert report.whole, report.to_dict()
    assert report.rounds == [4, 5, 7] and report.missing_rounds == [6]
    assert report.replays == {4: REPRODUCED, 5: REPRODUCED, 7: REPRODUCED}
    assert report.committed == 3 and report.records_not_committed == []


def test_a_committed_digest_without_its_record_breaks_the_trail(trail):
    path, records = trail
    report = check_trail(path, {records[0].digest(), "ab" * 32}, "tiny", VOCAB)
    assert not report.whole and report.committed_without_record == ["ab" * 32]
    assert report.records_not_committed == [5, 7]  # a figure: not what breaks it


def test_a_round_that_starts_from_another_checkpoint_is_a_fork(trail):
    path, records = trail
    forked = dataclasses.replace(records[2], round_index=8, base_checkpoint=records[0].base_checkpoint,
                                 new_checkpoint=records[0].base_checkpoint)
    append_record(path / "rounds.jsonl", forked)
    report = check_trail(path, {r.digest() for r in records}, "tiny", VOCAB)
    assert not report.whole and [(f.round_index, f.previous_round) for f in report.forks] == [(8, 7)]
    assert report.replays[8] == REPRODUCED  # the fork itself replays: only the line of checkpoints is broken


def test_a_round_whose_archive_is_damaged_does_not_replay(trail):
    path, records = trail
    body = next((path / "archive" / "round-4").glob("*.safetensors"))
    body.write_bytes(body.read_bytes()[:-1] + bytes([body.read_bytes()[-1] ^ 1]))
    report = check_trail(path, {r.digest() for r in records}, "tiny", VOCAB)
    assert not report.whole and set(report.not_reproduced) == {4}
    assert "does not match" in report.not_reproduced[4]


def test_a_record_claiming_a_checkpoint_its_contributions_do_not_give_is_a_mismatch(trail):
    path, records = trail
    claimed = dataclasses.replace(records[2], round_index=9, base_checkpoint=records[2].new_checkpoint,
                                  new_checkpoint="cd" * 32)
    append_record(path / "rounds.jsonl", claimed)
    report = check_trail(path, set(), "tiny", VOCAB)
    assert report.not_reproduced[9].startswith("MISMATCH")


def test_a_round_recorded_twice_is_reported(trail):
    path, records = trail
    append_record(path / "rounds.jsonl", dataclasses.replace(records[2], heldout_loss_after=0.5))
    report = check_trail(path, set(), "tiny", VOCAB)
    assert report.recorded_twice == [7] and not report.whole


def test_committed_digests_are_read_from_the_watch_log(tmp_path):
    log = tmp_path / "chain_commitments.jsonl"
    log.write_text("\n".join(json.dumps({"block": b, "digests": [d]}) for b, d in ((10, "aa"), (20, "bb"))) + "\n")
    assert read_committed(log) == {"aa", "bb"} and read_committed(tmp_path / "none.jsonl") == set()
