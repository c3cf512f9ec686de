"""A validator restarted after kill -9 at a bad moment, or with a truncated file, resumes from its
newest intact state and never drops a round it committed."""
from __future__ import annotations

import json

import pytest
import torch

from template.audit.round_record import RoundRecord, append_record, read_records
from template.validator.recovery import mark_commit, recover
from template.validator.state import CheckpointStore, ValidatorState


def weights(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((4, 4), value), "b": torch.full((4,), value)}


def record(round_index: int, base: str, new: str, loss: float) -> RoundRecord:
    return RoundRecord(netuid=1, round_index=round_index, start_block=60 * round_index, seed="00" * 32,
                       eval_block=60 * round_index + 41, base_checkpoint=base, new_checkpoint=new,
                       accepted=["5Miner"] if new != base else [], scores={"5Miner": 0.1 * round_index},
                       heldout_loss_before=loss + 0.1, heldout_loss_after=loss)


@pytest.fixture()
def trail(tmp_path):
    """Three settled rounds: checkpoints c0 -> c1 -> c2 -> c3, records, score reports."""
    store = CheckpointStore(tmp_path / "checkpoints")
    digests = [store.save(weights(float(i))) for i in range(4)]
    for r in range(1, 4):
        append_record(tmp_path / "rounds.jsonl", record(r, digests[r - 1], digests[r], 5.0 - r))
        with (tmp_path / "scores.jsonl").open("a") as handle:
            handle.write(json.dumps({"round": r, "reports": {"5Miner": {"uid": 3, "score": 0.1 * r}}}) + "\n")
    state = ValidatorState(last_round=3, checkpoint=digests[3], checkpoint_round=3)
    return tmp_path, store, digests, state


def test_a_round_settled_but_not_written_is_written_and_committed_on_restart(trail):
    path, store, digests, state = trail
    store_4 = store.save(weights(4.0))
    pending = record(4, digests[3], store_4, 1.0)
    state.pending_record, state.pending_commit = pending.canonical_json(), True
    state.last_round, state.checkpoint, state.checkpoint_round = 4, store_4, 4

    resumed, to_commit = recover(state, path, store, alpha=0.3)

    assert [r.round_index for r in read_records(path / "rounds.jsonl")] == [1, 2, 3, 4]
    assert to_commit == pending.digest()
    assert resumed.pending_record == "" and resumed.checkpoint == store_4


def test_a_pending_record_already_written_is_not_written_twice(trail):
    path, store, digests, state = trail
    written = read_records(path / "rounds.jsonl")[-1]
    state.pending_record, state.pending_commit = written.canonical_json(), False
    resumed, to_commit = recover(state, path, store, alpha=0.3)
    assert len(read_records(path / "rounds.jsonl")) == 3 and to_commit is None


def test_a_truncated_state_file_is_rebuilt_from_the_records(trail, errors):
    path, store, digests, state = trail
    state.save(path / "validator_state.json")
    text = (path / "validator_state.json").read_text()
    (path / "validator_state.json").write_text(text[: len(text) // 2])

    loaded = ValidatorState.load(path / "validator_state.json")
    resumed, _ = recover(loaded, path, store, alpha=0.3)

    assert loaded is None and any("validator_state.json" in line for line in errors)
    assert (resumed.last_round, resumed.checkpoint, resumed.checkpoint_round) == (3, digests[3], 3)
    assert [h["round"] for h in resumed.heldout_history] == [-1, 1, 2, 3]
    book = json.loads(resumed.scores_json)
    assert book["rounds"] == 3  # the EMA is folded again from the score reports, not started over


def test_a_lead_killed_before_its_commit_commits_it_on_restart_even_with_its_state_file_torn(trail, errors):
    path, store, digests, state = trail
    last = read_records(path / "rounds.jsonl")[-1]
    mark_commit(path, last.digest())  # appended, not yet committed; then the state file is cut
    state.save(path / "validator_state.json")
    text = (path / "validator_state.json").read_text()
    (path / "validator_state.json").write_text(text[: len(text) // 2])

    resumed, to_commit = recover(ValidatorState.load(path / "validator_state.json"), path, store, alpha=0.3)

    assert to_commit == last.digest() and resumed.last_round == 3
    (path / "record_to_commit").write_text("not a digest")
    assert recover(None, path, store, alpha=0.3)[1] is None  # a torn mark commits nothing


def test_a_truncated_checkpoint_falls_back_to_the_newest_intact_one(trail, errors):
    path, store, digests, state = trail
    broken = store.path(digests[3])
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])

    resumed, _ = recover(state, path, store, alpha=0.3)

    assert resumed.checkpoint == digests[2] and resumed.checkpoint_round == 2
    assert any(str(broken) in line for line in errors)
    assert not broken.exists() and broken.with_suffix(".corrupt").exists()


def test_a_half_written_last_record_is_cut_before_the_next_append(trail, errors):
    path, store, digests, _ = trail
    with (path / "rounds.jsonl").open("a") as handle:
        handle.write('{"netuid": 1, "round_index": 4, "sta')  # kill -9 mid-append
    assert [r.round_index for r in read_records(path / "rounds.jsonl")] == [1, 2, 3]
    append_record(path / "rounds.jsonl", record(4, digests[3], digests[3], 1.5))
    assert [r.round_index for r in read_records(path / "rounds.jsonl")] == [1, 2, 3, 4]
    assert any("half-written" in line for line in errors)


def test_the_score_ema_and_originality_records_fold_again_as_the_live_validator_folded_them(tmp_path):
    from template.validator.recovery import scores_replayed
    from template.validation.score_ema import FAIL_EVIDENCE, PASS_EVIDENCE, ScoreBook
    rounds = [{"a": (1.0, True), "b": (0.0, True)}, {"a": (0.0, False), "b": (0.0, True)},
              {"a": (1.0, True), "b": (0.7, True)}]
    live = ScoreBook(alpha=0.3)
    with (tmp_path / "scores.jsonl").open("w") as handle:
        for r, reports in enumerate(rounds):
            live.update({hk: pay for hk, (pay, _) in reports.items()}, {"a": 1, "b": 2},
                        unrecorded={hk for hk, (_, committed) in reports.items() if not committed})
            handle.write(json.dumps({"round": r, "reports": {hk: {"uid": 1 + (hk == "b"), "pay": pay, "score": pay,
                                                                  "committed": committed}
                                                             for hk, (pay, committed) in reports.items()}}) + "\n")
    replayed = scores_replayed(tmp_path / "scores.jsonl", alpha=0.3)
    assert replayed.to_json() == live.to_json()
    # a: two passes, the round it committed to nothing left out; b: two refusals, then a pass
    assert replayed.record("a") == pytest.approx(2 * PASS_EVIDENCE)
    assert replayed.record("b") == pytest.approx(2 * FAIL_EVIDENCE + PASS_EVIDENCE)
