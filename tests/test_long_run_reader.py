"""bench/long_run.py's reading of a finished run: digit boundaries and honest verdicts."""
import json

from bench.long_run import digit_boundaries, read_run


def test_digit_boundaries_are_the_powers_of_ten_the_index_reaches():
    assert digit_boundaries(2, 121) == [10, 100]
    assert digit_boundaries(2, 9) == []
    assert digit_boundaries(9, 10) == [10]
    assert digit_boundaries(10, 99) == []
    assert digit_boundaries(950, 1001) == [1000]


def _write_run(tmp_path, score_lines):
    (tmp_path / "validator").mkdir()
    summary = {"initial_heldout_loss": 7.0, "honest_incentive_share": 1.0,
               "rounds": [{"round": 9, "heldout_loss": 6.0}, {"round": 10, "heldout_loss": 5.5},
                          {"round": 12, "heldout_loss": 5.0}],
               "miners": [{"name": "h0", "hotkey": "A", "behaviour": "honest"},
                          {"name": "z", "hotkey": "Z", "behaviour": "zero"}]}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "validator" / "scores.jsonl").write_text("\n".join(json.dumps(s) for s in score_lines) + "\n")


def test_a_run_whose_honest_miner_was_refused_once_is_not_accepted_every_round(tmp_path):
    ok = {"accepted": True, "reason": "accepted"}
    _write_run(tmp_path, [{"round": 9, "reports": {"A": ok, "Z": {"accepted": False, "reason": "non_empty"}}},
                          {"round": 10, "reports": {"A": {"accepted": False, "reason": "heldout_gain: hurts"}}},
                          {"round": 12, "reports": {"A": ok}}])
    res = read_run(tmp_path, None)
    assert res["skipped_rounds"] == [11] and res["digit_boundaries_crossed"] == [10]
    assert res["honest"]["h0"]["accepted"] == 2 and res["honest"]["h0"]["scored"] == 3
    assert res["honest"]["h0"]["rejected"] == [{"round": 10, "reason": "heldout_gain: hurts"}]
    assert res["honest_accepted_every_round"] is False


def test_a_run_with_every_honest_contribution_accepted_passes(tmp_path):
    ok = {"accepted": True, "reason": "accepted"}
    _write_run(tmp_path, [{"round": r, "reports": {"A": ok}} for r in (9, 10, 12)])
    assert read_run(tmp_path, 1.0)["honest_accepted_every_round"] is True
