"""The miner's outbox keeps its newest rounds, ordered by round number, each with its commitment."""
from bittensor.sp_core import Keypair

from protocol.auth import sign_commitment
from template.miner.outbox import Outbox

MINER = Keypair.create_from_uri("//OutboxMiner")


def put(outbox: Outbox, round_index: int, body: bytes) -> None:
    outbox.put(round_index, body, sign_commitment(MINER, 1, round_index, body))


def test_pruning_keeps_the_newest_rounds_by_number(tmp_path):
    outbox = Outbox(tmp_path / "outbox", keep_rounds=8)
    for round_index in range(1, 13):
        put(outbox, round_index, f"body {round_index}".encode())
        assert outbox.body(round_index) == f"body {round_index}".encode()
        assert outbox.commitment(round_index).round_index == round_index
    assert outbox.rounds() == list(range(5, 13))
    assert all(outbox.body(r) is None and outbox.commitment(r) is None for r in range(1, 5))
    assert outbox.body(12) == b"body 12"
    assert sorted(p.name for p in (tmp_path / "outbox").glob("*.commit")) == sorted(
        f"round-{r}.commit" for r in range(5, 13))


def test_pruning_ignores_files_that_are_not_rounds(tmp_path):
    outbox = Outbox(tmp_path / "outbox", keep_rounds=2)
    (tmp_path / "outbox" / "round-x.safetensors").write_bytes(b"stray")
    for round_index in (99, 100, 101):
        put(outbox, round_index, b"b")
    assert outbox.rounds() == [100, 101]
    assert (tmp_path / "outbox" / "round-x.safetensors").exists()


def test_a_damaged_commitment_means_no_finished_work(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    put(outbox, 3, b"body")
    (tmp_path / "outbox" / "round-3.commit").write_text('{"netuid": 1, "round_')
    assert outbox.commitment(3) is None  # the app then answers as for unfinished work
