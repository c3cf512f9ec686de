import pytest

from template.validation.score_ema import ScoreBook

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
