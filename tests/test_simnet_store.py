"""simnet's store starts a new chain only where no database file exists: an empty, truncated,
foreign or rolled-back file (its -wal lost) is refused with an error naming it, and the CLI
says so in one line instead of serving a fresh genesis."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from simnet.head_marker import HeadMarker, marker_path, read_marker, write_marker
from simnet.node import Node
from simnet.store import Store, StoreCorrupt
from template.chain.simnet_process import SimnetProcess

REPO = Path(__file__).resolve().parents[1]


def chain_at(db: Path, blocks: int) -> Node:
    """A node at block `blocks`, still running (its recent writes in the -wal)."""
    node = Node(str(db), manual_clock=True)
    node.advance(blocks)
    return node


def closed_chain(db: Path, blocks: int) -> bytes:
    """A chain at block `blocks`, cleanly stopped (everything in the main file); its bytes."""
    chain_at(db, blocks).stop()
    assert not Path(f"{db}-wal").exists()
    return db.read_bytes()


def serve(db: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "simnet", "serve", "--db", str(db), "--manual-clock",
                           "--port", "0"], capture_output=True, text=True, timeout=120, cwd=str(REPO), env=env)


def test_a_fresh_path_starts_a_genesis_chain_that_reopens_at_its_head(tmp_path):
    db = tmp_path / "new" / "chain.db"
    node = Node(str(db), manual_clock=True)
    assert node.state.head == 0
    node.advance(7)
    node.stop()
    assert read_marker(db).head == 7
    reopened = Node(str(db), manual_clock=True)
    assert reopened.state.head == 7 and reopened.state.chain == "simnet"
    reopened.stop()


def test_a_zero_byte_database_is_refused_and_left_as_it_was(tmp_path):
    db = tmp_path / "chain.db"
    db.touch()
    with pytest.raises(StoreCorrupt, match=r"empty \(0 bytes\)") as refused:
        Store(db)
    assert refused.value.path == str(db) and str(db) in str(refused.value)
    assert db.stat().st_size == 0 and not Path(f"{db}-wal").exists()


@pytest.mark.parametrize("keep", ["half", "one page", "header only"])
def test_a_truncated_database_is_refused(tmp_path, keep):
    db = tmp_path / "chain.db"
    whole = closed_chain(db, 20)
    cut = {"half": len(whole) // 2, "one page": 4096, "header only": 100}[keep]
    db.write_bytes(whole[:cut])
    with pytest.raises(StoreCorrupt, match="malformed") as refused:
        Store(db)
    assert str(db) in str(refused.value)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    db = tmp_path / "chain.db"
    db.write_bytes(b"not a database, just some bytes " * 200)
    with pytest.raises(StoreCorrupt, match="file is not a database"):
        Store(db)


def test_a_sqlite_file_without_a_chain_is_refused(tmp_path):
    db = tmp_path / "chain.db"
    with sqlite3.connect(db) as other:
        other.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(StoreCorrupt, match="no simnet chain"):
        Store(db)
    with sqlite3.connect(db) as other:  # untouched: no kv table was added
        assert [name for (name,) in other.execute("SELECT name FROM sqlite_master")] == ["notes"]


def test_a_main_file_without_its_wal_is_refused_as_a_rollback(tmp_path):
    node = chain_at(tmp_path / "live" / "chain.db", 10)
    live = Path(node.store.path)
    with sqlite3.connect(live) as reader:  # block 10 into the main file; the blocks after it stay in the -wal
        assert reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0] == 0
    node.advance(20)
    assert Path(f"{live}-wal").stat().st_size > 0
    lost, whole = tmp_path / "lost", tmp_path / "whole"
    for folder, names in ((lost, ["chain.db", "chain.db.head"]),
                          (whole, ["chain.db", "chain.db-wal", "chain.db.head"])):
        folder.mkdir()
        for name in names:
            shutil.copy(live.parent / name, folder / name)
    node.stop()
    with pytest.raises(StoreCorrupt, match="-wal file is missing or stale") as refused:
        Store(lost / "chain.db")
    assert "from block 30 to block 10 " in str(refused.value) and str(lost / "chain.db") in str(refused.value)
    with_wal = Node(str(whole / "chain.db"), manual_clock=True)
    assert with_wal.state.head == 30
    with_wal.stop()
    marker_path(lost / "chain.db").unlink()  # the way out the error names: accept the rollback
    rolled_back = Node(str(lost / "chain.db"), manual_clock=True)
    assert rolled_back.state.head == 10
    rolled_back.stop()


def test_a_marker_behind_the_database_is_accepted(tmp_path):
    """A node killed between a commit and the marker's rewrite leaves the marker one write behind:
    nothing is lost, so the database opens, and the next flush brings the marker up to date."""
    db = tmp_path / "chain.db"
    node = chain_at(db, 5)
    behind = marker_path(db).read_bytes()
    node.advance(3)
    node.stop()
    marker_path(db).write_bytes(behind)
    node = Node(str(db), manual_clock=True)
    assert node.state.head == 8
    node.advance(1)
    assert read_marker(db).head == 9
    node.stop()


def test_a_marker_of_another_chain_or_damaged_is_refused(tmp_path):
    db = tmp_path / "chain.db"
    closed_chain(db, 2)
    own = read_marker(db)
    write_marker(db, HeadMarker(seq=own.seq, head=own.head, genesis_ms=own.genesis_ms + 1))
    with pytest.raises(StoreCorrupt, match="another chain"):
        Store(db)
    write_marker(db, own)
    marker_path(db).write_text(marker_path(db).read_text().replace('"head": 2', '"head": 9'))
    with pytest.raises(StoreCorrupt, match="fails its checksum"):
        Store(db)
    marker_path(db).write_text("{")
    with pytest.raises(StoreCorrupt, match="not a head marker"):
        Store(db)
    write_marker(db, own)
    Store(db).close()  # its own marker back: the chain opens


@pytest.mark.parametrize("left", ["chain.db.head", "chain.db-wal"])
def test_a_missing_database_with_its_leftovers_is_refused(tmp_path, left):
    db = tmp_path / "chain.db"
    node = chain_at(db, 4)
    shutil.copy(tmp_path / left, tmp_path / f"{left}.saved")
    node.stop()
    db.unlink()
    marker_path(db).unlink()
    os.replace(tmp_path / f"{left}.saved", tmp_path / left)
    with pytest.raises(StoreCorrupt, match="the database is missing"):
        Store(db)
    assert not db.exists()


def test_serve_refuses_a_zero_byte_database_in_one_line(tmp_path):
    db = tmp_path / "chain.db"
    db.touch()
    done = serve(db)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(db) in lines[0] and "empty" in lines[0], done.stderr
    assert "simnet ready" not in done.stdout and db.stat().st_size == 0


def test_serve_refuses_a_killed_nodes_database_without_its_wal(tmp_path):
    db = tmp_path / "chain.db"
    sim = SimnetProcess(db).start()
    head = sim.advance(25)
    sim.proc.kill()  # no clean shutdown: no checkpoint, the last blocks stay in the -wal
    sim.proc.wait(timeout=30)
    sim.proc = None
    os.unlink(f"{db}-wal")
    done = serve(db)
    assert done.returncode == 1, done.stdout + done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr and str(db) in line, done.stderr
    assert f"from block {head} to no chain at all" in line, done.stderr
