"""The kill -9 crash suite: the local subnet with its lead and a miner killed at chosen moments of
the round and started again at once, checked against the crash bars (scripts/check_crash_run.py):
no committed round dropped, no fork, every round replays, only the rounds a neuron was down for
lost, a miner's AdamW moments carried over. The long campaign is bench/crash_campaign.py."""
from __future__ import annotations

import json
from collections import Counter

import pytest

import torch

from scripts.check_crash_run import Kill, check_crash_run, lead_rounds_down, miner_rounds_down, moments_after_restarts
from scripts.crash_chaos import LEAD_PHASES, MINER_PHASES, plan_kills, truncate
from template.audit.round_record import RoundRecord, append_record
from template.training.checkpoint import save_checkpoint, state_hash
from template.training.presets import PRESET_SETTINGS
from tests.test_local_subnet import log_tails, run_main_job


def test_kills_are_planned_at_distinct_points_in_every_phase_and_never_in_the_last_round():
    kills = plan_kills("validator", "validator", 10, rounds=40, train_blocks=48, seed=3)
    slots = [k.after_records for k in kills]
    assert len(set(slots)) == 10 and max(slots) <= 38 and slots == sorted(slots)
    assert min(Counter(k.phase for k in kills)[p] for p in LEAD_PHASES) >= 2  # 10 kills over 4 phases
    assert kills == plan_kills("validator", "validator", 10, rounds=40, train_blocks=48, seed=3)
    assert kills != plan_kills("validator", "validator", 10, rounds=40, train_blocks=48, seed=4)
    miner = plan_kills("miner0-honest", "miner", 3, rounds=10, train_blocks=48, seed=3)
    assert sorted(k.phase for k in miner) == sorted(MINER_PHASES)
    with pytest.raises(ValueError):
        plan_kills("validator", "validator", 10, rounds=10, train_blocks=48, seed=0)


def kill(block: int, up: int | None, last_recorded: int = -1, round_blocks: int = 72) -> Kill:
    return Kill("validator", "validator", "training", block, block // round_blocks, last_recorded, 0, up)


def test_a_lead_is_down_from_its_unrecorded_round_to_the_first_it_can_join_again():
    # Killed in round 5 (blocks 360..431, deadline 408) before its record; back at block 470:
    # round 6 began at 432 and its join slack (48 // 4 = 12 blocks) had passed, so 5 and 6 are down.
    assert lead_rounds_down(kill(380, up=470, last_recorded=4), 72, 48, last_round=20) == {5, 6}
    # Back within round 6's join slack: only round 5.
    assert lead_rounds_down(kill(380, up=436, last_recorded=4), 72, 48, last_round=20) == {5}
    # Killed right after round 5's record: round 5 is not down.
    assert lead_rounds_down(kill(420, up=436, last_recorded=5), 72, 48, last_round=20) == set()
    assert lead_rounds_down(kill(380, up=None, last_recorded=4), 72, 48, last_round=8) == {5, 6, 7, 8}


def test_a_miner_is_down_from_the_round_it_died_in_to_the_one_under_way_when_it_served_again():
    miner = Kill("miner0", "miner", "training", 380, 5, 4, 0, 470)
    assert miner_rounds_down(miner, 72, 48, last_round=20) == {5, 6}
    assert miner_rounds_down(Kill("miner0", "miner", "training", 380, 5, 4, 0, 420), 72, 48, 20) == {5}


def test_moments_count_as_kept_only_when_the_restart_loads_at_least_the_steps_trained():
    before = b"round 3 trained 15 steps, loss 6.9 -> 6.1\nround 4 trained 9 steps, loss 6.1 -> 5.8\n"
    loaded = b"AdamW moments of unit full carried over from /s/adamw-moments.safetensors (step 24)\n"
    stale = b"AdamW moments of unit full carried over from /s/adamw-moments.safetensors (step 15)\n"
    restarts = [Kill("m", "miner", "training", 400, 5, 4, len(before), 470)]
    assert moments_after_restarts(before + loaded, restarts)[0]["kept"] is True
    assert moments_after_restarts(before + stale, restarts)[0]["kept"] is False
    assert moments_after_restarts(before + b"miner uid 2 (honest) serving on x\n", restarts)[0]["kept"] is False
    assert moments_after_restarts(b"", [Kill("m", "miner", "training", 10, 0, -1, 0, 60)])[0]["kept"] is None


def test_moments_cut_in_half_by_the_chaos_must_be_set_aside_with_an_error_on_restart():
    before = b"round 3 trained 15 steps, loss 6.9 -> 6.1\n"
    cut = Kill("m", "miner", "training", 400, 5, 4, len(before), 470, {"truncated": "moments"})
    refused = b"/s/adamw-moments.safetensors is corrupt (too short); set aside, going on without it\n"
    assert moments_after_restarts(before + refused, [cut])[0] == {
        "kill_block": 400, "phase": "training", "steps_trained_before": 15, "moments_step_loaded": None,
        "kept": None, "truncated": True, "set_aside": True}
    assert moments_after_restarts(before, [cut])[0]["set_aside"] is False
    # The next restart carries what was trained since the moments started over, not before.
    later = b"round 6 trained 10 steps, loss 6.0 -> 5.9\n"
    second = Kill("m", "miner", "training", 700, 8, 7, len(before + refused + later), 760)
    loaded = b"AdamW moments of unit full carried over from /s/adamw-moments.safetensors (step 10)\n"
    assert moments_after_restarts(before + refused + later + loaded, [cut, second])[1]["kept"] is True


def test_each_truncation_damages_its_file_as_a_crash_mid_write_would(tmp_path):
    assert truncate("record_tail", tmp_path) is None and truncate("moments", tmp_path) is None  # nothing yet
    (tmp_path / "rounds.jsonl").write_text('{"round_index": 1}\n{"round_index": 2}\n')
    assert truncate("record_tail", tmp_path)["bytes_appended"] == 9
    assert (tmp_path / "rounds.jsonl").read_text().endswith('}\n{"round_i')
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ab.safetensors").write_bytes(b"x" * 100)
    (tmp_path / "validator_state.json").write_text(json.dumps({"checkpoint": "ab"}))
    assert truncate("checkpoint", tmp_path)["bytes_after"] == 50
    assert (tmp_path / "checkpoints" / "ab.safetensors").stat().st_size == 50
    assert truncate("state", tmp_path)["path"].endswith("validator_state.json")
    with pytest.raises(ValueError):
        json.loads((tmp_path / "validator_state.json").read_text())


def crash_run(out, recorded: list[int], contributed: dict[str, list[int]]):
    """A run's files as the runner leaves them: the lead killed once in round 5 (blocks 480..575)
    and up again at block 540, miner "m0" killed in round 3 and up again within it; rounds of 96
    blocks, 48 of training. Records accept nothing (so they replay) but name contributions."""
    weights = {"w": torch.ones(3)}
    digest = state_hash(weights)
    save_checkpoint(out / "validator" / "checkpoints" / f"{digest}.safetensors", weights)
    records = [RoundRecord(netuid=1, round_index=r, start_block=96 * r, seed="00" * 32, eval_block=96 * r + 49,
                           base_checkpoint=digest, new_checkpoint=digest,
                           recipe=PRESET_SETTINGS["tiny"].recipe.model_dump(),
                           contributions={hk: "ab" * 32 for hk, rounds in contributed.items() if r in rounds})
               for r in recorded]
    for record in records:
        append_record(out / "validator" / "rounds.jsonl", record)
    (out / "chain_commitments.jsonl").write_text(json.dumps({"digests": [records[-1].digest()]}) + "\n")
    events = [{"event": "run", "round_blocks": 96, "train_blocks": 48, "rounds": len(recorded), "preset": "tiny"},
              {"event": "kill", "name": "validator", "role": "validator", "phase": "scoring", "block": 500,
               "round": 5, "records": 3, "last_recorded_round": 4, "log_offset": 0},
              {"event": "kill", "name": "m0", "role": "miner", "phase": "training", "block": 300, "round": 3,
               "records": 2, "last_recorded_round": 2, "log_offset": 0},
              {"event": "up", "name": "m0", "role": "miner", "block": 320},
              {"event": "up", "name": "validator", "role": "validator", "block": 540}]
    (out / "chaos.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (out / "logs").mkdir()
    (out / "logs" / "m0.log").write_text("")
    miners = [{"name": name, "hotkey": name, "behaviour": "honest"} for name in contributed]
    (out / "summary.json").write_text(json.dumps({"miners": miners}))


def test_the_crash_check_passes_a_run_that_lost_only_the_rounds_a_neuron_was_down_for(tmp_path):
    crash_run(tmp_path, [2, 3, 4, 6, 7], {"m0": [2, 4, 6, 7], "m1": [2, 3, 4, 6, 7]})
    report = check_crash_run(tmp_path)
    assert report.ok, report.failures
    assert report.lead["rounds_missing"] == [5] and report.lead["kills"][0]["rounds_down"] == [5]
    assert report.miners["m0"]["rounds_without_contribution"] == [3] == report.miners["m0"]["rounds_down"]


def test_the_crash_check_fails_a_round_lost_while_the_lead_was_up(tmp_path):
    crash_run(tmp_path, [2, 3, 4, 7], {"m0": [2, 4, 7], "m1": [2, 3, 4, 7]})
    assert check_crash_run(tmp_path).failures == ["rounds lost while the lead was up: [6]"]


def test_a_round_the_lead_skipped_for_an_overrun_is_counted_apart_not_as_a_crash_loss(tmp_path):
    crash_run(tmp_path, [2, 3, 4, 7], {"m0": [2, 4, 7], "m1": [2, 3, 4, 7]})
    (tmp_path / "logs" / "validator.log").write_text(
        "12:00:00 validator WARNING round(s) 6 skipped: this validator was busy past their start (block 580)\n")
    report = check_crash_run(tmp_path)
    assert report.ok, report.failures
    assert report.lead["rounds_skipped_overrun"] == [6] and report.lead["rounds_lost_while_up"] == []


def test_the_crash_check_fails_a_miner_that_missed_a_round_its_undisturbed_peer_made(tmp_path):
    crash_run(tmp_path, [2, 3, 4, 6, 7], {"m0": [2, 4, 7], "m1": [2, 3, 4, 6, 7]})
    assert check_crash_run(tmp_path).failures == ["m0: no contribution in rounds [6], while it was up"]
    # A round the undisturbed miner missed too is not held against it.
    crash_run(tmp_path / "late", [2, 3, 4, 6, 7], {"m0": [2, 4, 7], "m1": [2, 3, 4, 7]})
    assert check_crash_run(tmp_path / "late").ok


def test_the_crash_check_fails_a_committed_digest_the_lead_has_no_record_of(tmp_path):
    crash_run(tmp_path, [2, 3, 4, 6, 7], {"m0": [2, 4, 6, 7], "m1": [2, 3, 4, 6, 7]})
    with (tmp_path / "chain_commitments.jsonl").open("a") as handle:
        handle.write(json.dumps({"digests": ["cd" * 32]}) + "\n")
    assert check_crash_run(tmp_path).failures == [f"committed on chain but not in rounds.jsonl: {['cd' * 32]}"]


@pytest.mark.slow
def test_lead_and_miner_killed_at_chosen_moments_lose_only_the_rounds_they_were_down_for(tmp_path):
    """10 rounds, the lead killed 3 times (three of: while miners train, while it scores, after a
    checkpoint write, right after a record is appended), an honest miner killed twice; the first
    two lead kills leave a half-written record line and a torn state file, the miner's its AdamW
    moments and then its error-feedback residual cut in half."""
    summary, _ = run_main_job(tmp_path, "--rounds", "10", "--round-blocks", "96", "--train-blocks", "48",
                              "--inner-steps", "10", "--crash-lead", "3", "--crash-miner", "miner0-honest:2",
                              "--chaos-seed", "7", "--crash-truncate", "record_tail,state,moments,residual",
                              timeout=1800)
    report = check_crash_run(tmp_path)
    context = json.dumps({"lead": report.lead, "miners": report.miners, "kills": report.kills}, indent=1) \
        + log_tails(tmp_path)
    assert report.ok, "\n".join(report.failures) + context
    assert len(report.kills) == 5 and report.kills_not_done == 0, context
    assert len({k["phase"] for k in report.kills if k["role"] == "validator"}) == 3, context
    assert len(summary["rounds"]) == 10 == report.lead["rounds_recorded"], context
    assert report.lead["rounds_reproduced"] == 10 and report.lead["forks"] == 0, context
    assert report.lead["digests_committed"] >= 9, context  # every round's record, as the chain saw it
    assert any(r["accepted"] for r in summary["rounds"]), context  # the rounds replayed merged real updates
    truncated = {role: [k["facts"].get("truncated") for k in report.kills if k["role"] == role]
                 for role in ("validator", "miner")}
    assert truncated == {"validator": ["record_tail", "state", None], "miner": ["moments", "residual"]}, context
    miner = report.miners["miner0-honest"]
    assert miner["moments"][0]["set_aside"] and miner["moments"][1]["kept"], context
