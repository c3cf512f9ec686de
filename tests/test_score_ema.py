import json

import pytest

from template.validation import score_ema
from template.validation.score_ema import FAIL_EVIDENCE, PASS_EVIDENCE, RECORD_BOUND, ScoreBook, record_factor

UIDS = {"alice": 0, "bob": 1}


def test_ema_moves_toward_round_score():
    book = ScoreBook(alpha=0.3)
    book.update({"alice": 1.0}, UIDS)
    assert book.ema("alice") == pytest.approx(0.3)
    book.update({"alice": 1.0}, UIDS)
    assert book.ema("alice") == pytest.approx(0.51)


def test_absent_miner_decays_toward_zero():
    book = ScoreBook(alpha=0.5)
    book.update({"alice": 1.0, "bob": 1.0}, UIDS)
    book.update({"alice": 1.0}, UIDS)
    assert book.ema("bob") == pytest.approx(0.25)


def test_failed_miner_decays_like_absent():
    book = ScoreBook(alpha=0.5)
    book.update({"bob": 1.0}, UIDS)
    book.update({"bob": 0.0}, UIDS)
    assert book.ema("bob") == pytest.approx(0.25)


def test_three_missed_rounds_reset_to_zero():
    book = ScoreBook(alpha=0.3)
    for _ in range(5):
        book.update({"alice": 1.0}, UIDS)
    book.update({}, UIDS)
    book.update({}, UIDS)
    assert book.ema("alice") > 0
    book.update({}, UIDS)
    assert book.ema("alice") == 0.0


def test_a_positive_round_restarts_the_missed_count():
    book = ScoreBook(alpha=0.3)
    for scores in ({"alice": 1.0}, {}, {}, {"alice": 1.0}, {}, {}):
        book.update(scores, UIDS)
    assert book.ema("alice") > 0


def test_hotkey_reregistered_to_new_uid_starts_fresh():
    book = ScoreBook(alpha=0.5)
    book.update({"alice": 1.0}, UIDS)
    book.update({"alice": 0.2}, {"alice": 7, "bob": 1})
    assert book.ema("alice") == pytest.approx(0.1)


def test_deregistered_hotkey_is_forgotten():
    book = ScoreBook(alpha=0.5)
    book.update({"alice": 1.0}, UIDS)
    book.update({}, {"bob": 1})
    assert "alice" not in book.entries


def test_weights_normalised_to_one_by_uid():
    book = ScoreBook(alpha=0.5)
    book.update({"alice": 3.0, "bob": 1.0}, UIDS)
    w = book.weights(UIDS)
    assert w == pytest.approx({0: 0.75, 1: 0.25})
    assert sum(w.values()) == pytest.approx(1.0)


def test_weights_empty_when_all_zero():
    book = ScoreBook()
    book.update({"alice": 0.0}, UIDS)
    assert book.weights(UIDS) == {}


def test_weights_ignore_entry_from_an_old_uid():
    book = ScoreBook(alpha=0.5)
    book.update({"alice": 1.0, "bob": 1.0}, UIDS)
    assert book.weights({"alice": 5, "bob": 1}) == {1: 1.0}


def test_json_round_trip_resumes_exactly():
    book = ScoreBook(alpha=0.3)
    for r in range(4):
        book.update({"alice": 0.1 * r, "bob": 1.0 / 3}, UIDS)
    restored = ScoreBook.from_json(book.to_json())
    assert restored.to_json() == book.to_json()
    book.update({"alice": 0.7}, UIDS)
    restored.update({"alice": 0.7}, UIDS)
    assert restored.weights(UIDS) == book.weights(UIDS)
    assert restored.entries == book.entries


def _fold(book: ScoreBook, pays: list[float], hotkey: str = "alice") -> None:
    for pay in pays:
        book.update({hotkey: pay}, UIDS)


def test_a_chance_pass_amid_failures_earns_almost_nothing():
    chance, honest = ScoreBook(alpha=0.3), ScoreBook(alpha=0.3)
    _fold(chance, [0.0] * 6 + [1.0])
    _fold(honest, [1.0])
    assert chance.ema("alice") < 0.05 * honest.ema("alice")
    assert chance.record("alice") == pytest.approx(-RECORD_BOUND + PASS_EVIDENCE)


def test_one_refused_round_costs_a_good_record_nothing_later():
    refused_once, never = ScoreBook(alpha=0.3), ScoreBook(alpha=0.3)
    _fold(refused_once, [1.0, 1.0, 1.0, 0.0, 1.0])
    _fold(never, [1.0, 1.0, 1.0, 0.0, 1.0])
    # the same sequence folded without a record: each pay enters in full
    plain = 0.0
    for pay in [1.0, 1.0, 1.0, 0.0, 1.0]:
        plain = 0.7 * plain + 0.3 * pay
    assert refused_once.ema("alice") == pytest.approx(plain)
    assert record_factor(refused_once.record("alice")) == 1.0


def test_a_first_round_pass_is_paid_in_full_and_a_first_round_fail_costs_the_next_pass():
    book = ScoreBook(alpha=1.0)
    _fold(book, [1.0])
    assert book.ema("alice") == 1.0
    late_starter = ScoreBook(alpha=1.0)
    _fold(late_starter, [0.0, 1.0])
    assert 0.5 < late_starter.ema("alice") < 1.0  # odds below even after one fail and one pass
    _fold(late_starter, [1.0])
    assert late_starter.ema("alice") == 1.0


def test_record_is_bounded_so_a_mended_miner_is_paid_in_full_after_three_passes():
    book = ScoreBook(alpha=1.0)
    _fold(book, [0.0] * 50 + [1.0, 1.0])
    assert book.ema("alice") < 1.0
    _fold(book, [1.0])
    assert book.ema("alice") == pytest.approx(1.0)


def test_absent_rounds_leave_the_record_alone():
    book = ScoreBook(alpha=0.3)
    _fold(book, [1.0, 0.0])
    before = book.record("alice")
    book.update({"bob": 1.0}, UIDS)
    assert book.record("alice") == before


def test_state_without_records_loads_as_no_evidence():
    book = ScoreBook(alpha=0.3)
    _fold(book, [1.0])
    data = json.loads(book.to_json())
    del data["records"]
    data["entries"]["alice"]["field_of_a_later_version"] = 1
    restored = ScoreBook.from_json(json.dumps(data))
    assert restored.record("alice") == 0.0 and restored.ema("alice") == book.ema("alice")


def test_a_round_committed_to_nothing_leaves_the_record_alone_but_withheld_bytes_count():
    book = ScoreBook(alpha=0.3)
    _fold(book, [1.0, 1.0, 1.0])
    top = book.record("alice")
    for _ in range(4):  # offline: scored (pay 0) but committed to nothing
        book.update({"alice": 0.0}, UIDS, unrecorded={"alice"})
    assert book.record("alice") == top
    book.update({"alice": 0.0}, UIDS)  # committed, then withheld or refused
    assert book.record("alice") == pytest.approx(top + FAIL_EVIDENCE)


def test_leaving_the_plan_or_moving_uid_does_not_wipe_a_bad_record():
    book = ScoreBook(alpha=0.3)
    _fold(book, [0.0] * 5)
    bad = book.record("alice")
    assert bad == pytest.approx(-RECORD_BOUND)
    book.update({}, {"bob": 1})  # out of the plan for a round: its EMA is gone
    assert "alice" not in book.entries and book.record("alice") == bad
    book.update({"alice": 1.0}, {"alice": 9, "bob": 1})  # back, on another uid
    assert book.record("alice") == pytest.approx(bad + PASS_EVIDENCE)
    assert book.ema("alice") < 0.3 * 0.05
    restored = ScoreBook.from_json(book.to_json())
    assert restored.records == book.records


def test_good_records_of_departed_hotkeys_are_dropped_and_bad_ones_kept_up_to_the_cap(monkeypatch):
    monkeypatch.setattr(score_ema, "MAX_ABSENT_RECORDS", 2)
    book = ScoreBook(alpha=0.3)
    uids = {f"hk{i}": i for i in range(4)}
    book.update({"hk0": 1.0, "hk1": 0.0, "hk2": 0.0, "hk3": 0.0}, uids)
    book.update({"hk2": 0.0}, uids)  # hk2 the most negative
    book.update({}, {"other": 9})
    assert set(book.records) == {"hk2", "hk1"} or set(book.records) == {"hk2", "hk3"}
    assert "hk0" not in book.records and "hk2" in book.records
