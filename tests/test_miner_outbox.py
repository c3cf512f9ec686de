"""The miner's outbox keeps its newest rounds, ordered by round number."""
from template.miner.outbox import Outbox


def test_pruning_keeps_the_newest_rounds_by_number(tmp_path):
    outbox = Outbox(tmp_path / "outbox", keep_rounds=8)
    for round_index in range(1, 13):
        outbox.put(round_index, f"body {round_index}".encode(), f"sig {round_index}")
        assert outbox.get(round_index) == (f"body {round_index}".encode(), f"sig {round_index}")
    assert outbox.rounds() == list(range(5, 13))
    assert all(outbox.get(r) is None for r in range(1, 5))
    assert outbox.get(12) == (b"body 12", "sig 12")
    assert sorted(p.name for p in (tmp_path / "outbox").glob("*.sig")) == sorted(
        f"round-{r}.sig" for r in range(5, 13))


def test_pruning_ignores_files_that_are_not_rounds(tmp_path):
    outbox = Outbox(tmp_path / "outbox", keep_rounds=2)
    (tmp_path / "outbox" / "round-x.safetensors").write_bytes(b"stray")
    for round_index in (99, 100, 101):
        outbox.put(round_index, b"b", "s")
    assert outbox.rounds() == [100, 101]
    assert (tmp_path / "outbox" / "round-x.safetensors").exists()
