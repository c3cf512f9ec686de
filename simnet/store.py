"""SQLite persistence for simnet: namespaced JSON rows, written back when dirty.

The chain state lives in memory as ``{namespace: {key: json-able value}}``; callers mark
the rows they change with ``touch`` and ``flush`` writes them (and deletions) in one
transaction. One row per account, subnet, neuron, stake position, commitment and receipt
keeps a block's write small even on a full subnet.

A new chain starts only where no database file exists. A file that is empty, not SQLite,
truncated, holds no chain, or is older than its head marker (``head_marker.py``: the
``-wal`` is missing or stale) is refused with ``StoreCorrupt``, never replaced by a genesis.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

from .codec import decode, encode
from .head_marker import HeadMarker, MarkerUnreadable, MarkerWriter, marker_path, read_marker

log = logging.getLogger("simnet")

NAMESPACES = ("meta", "accounts", "subnets", "neurons", "stake", "owners",
              "commitments", "receipts", "events", "commits")
SEQ_KEY = "store_seq"  # meta row: flushes so far, committed with each flush's rows


class StoreCorrupt(RuntimeError):
    """The database at `path` cannot be used as it is; `why` says what is wrong and what to do."""

    def __init__(self, path: str, why: str):
        super().__init__(f"{path}: {why}")
        self.path = path
        self.why = why


class Store:
    def __init__(self, path: str | Path):
        self.path = str(path)
        self._on_disk = self.path != ":memory:"
        existed = self._on_disk and _existing(self.path)
        if self._on_disk:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.data: dict[str, dict[str, Any]] = {ns: {} for ns in NAMESPACES}
        self._dirty: set[tuple[str, str]] = set()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        try:
            self._open(existed)
            if existed:
                self._check_chain()
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise StoreCorrupt(self.path, f"not a readable SQLite database ({error}); "
                                          "restore it, or delete it to start a new chain") from None
        except StoreCorrupt:
            self._db.close()
            raise
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit is not fsynced, so a power cut may lose the last few blocks; the
        # head marker then reports that rollback on the next open.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._marker = self._open_marker() if self._on_disk else None

    def _open_marker(self) -> MarkerWriter | None:
        try:
            return MarkerWriter(self.path)
        except OSError as error:  # the chain still runs; only the rollback check is lost
            log.error("cannot write %s: %s", marker_path(self.path), error)
            return None

    def _open(self, existed: bool) -> None:
        """Load the rows. An existing file is only read here: a refused one is left as it was."""
        if existed:
            problems = [row[0] for row in self._db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise StoreCorrupt(self.path, f"fails SQLite's quick_check ({problems[0]}); "
                                              "restore it, or delete it to start a new chain")
            if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                    "AND name = 'kv'").fetchone():
                return
        else:
            self._db.execute("CREATE TABLE kv (ns TEXT, key TEXT, value TEXT, "
                             "PRIMARY KEY (ns, key))")
            self._db.commit()
        for ns, key, value in self._db.execute("SELECT ns, key, value FROM kv"):
            try:
                self.data.setdefault(ns, {})[key] = decode(json.loads(value))
            except (ValueError, TypeError, KeyError, AttributeError) as error:
                raise StoreCorrupt(self.path, f"row {ns}/{key} does not decode ({error})") from None

    def _check_chain(self) -> None:
        """Refuse an existing file without a chain, or behind the marker its last flush wrote."""
        meta = self.data["meta"]
        head = meta.get("head")
        try:
            marker = read_marker(self.path)
        except MarkerUnreadable as error:
            raise StoreCorrupt(self.path, f"{error}; delete it to accept the database as it "
                                          "is") from None
        if marker is None:  # a database from before markers, or its marker was deleted
            if head is None:
                raise StoreCorrupt(self.path, "holds no simnet chain (no head block); "
                                              "delete it to start a new chain")
            return
        marker_name, seq = marker_path(self.path).name, int(meta.get(SEQ_KEY) or 0)
        if head is None or marker.seq > seq:
            now = "no chain at all" if head is None else f"block {head}"
            raise StoreCorrupt(self.path, f"the -wal file is missing or stale: the chain would roll "
                                          f"back from block {marker.head} to {now} "
                                          f"({marker.seq - seq} writes lost); restore "
                                          f"{Path(self.path).name}-wal, or delete {marker_name} "
                                          "to accept the rollback")
        if marker.genesis_ms != int(meta.get("genesis_ms") or 0):
            raise StoreCorrupt(self.path, f"{marker_name} was written for another chain (a "
                                          "different genesis); delete it if this database is "
                                          "the one to serve")

    def get(self, ns: str, key: str, default: Any = None) -> Any:
        return self.data[ns].get(key, default)

    def put(self, ns: str, key: str, value: Any) -> None:
        self.data[ns][key] = value
        self._dirty.add((ns, key))

    def delete(self, ns: str, key: str) -> None:
        self.data[ns].pop(key, None)
        self._dirty.add((ns, key))

    def touch(self, ns: str, key: str) -> None:
        self._dirty.add((ns, key))

    def flush(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            meta = self.data["meta"]
            meta[SEQ_KEY] = int(meta.get(SEQ_KEY) or 0) + 1
            dirty, self._dirty = self._dirty | {("meta", SEQ_KEY)}, set()
            rows, gone = [], []
            for ns, key in dirty:
                if key in self.data[ns]:
                    rows.append((ns, key, json.dumps(encode(self.data[ns][key]))))
                else:
                    gone.append((ns, key))
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", rows)
                self._db.executemany("DELETE FROM kv WHERE ns = ? AND key = ?", gone)
            if self._marker is not None:
                self._write_marker(self._marker)

    def _write_marker(self, writer: MarkerWriter) -> None:
        meta = self.data["meta"]
        marker = HeadMarker(seq=int(meta[SEQ_KEY]), head=int(meta.get("head") or 0),
                            genesis_ms=int(meta.get("genesis_ms") or 0))
        try:
            writer.write(marker)
        except OSError as error:  # the commit stands; only the rollback check is weaker
            log.error("cannot write %s: %s", writer.path, error)

    def close(self) -> None:
        self.flush()
        self._db.close()
        if self._marker is not None:
            self._marker.close()
            self._marker = None


def _existing(path: str) -> bool:
    """Whether a database is at `path`; StoreCorrupt where what is there (or left of it) must
    not be taken for a fresh start."""
    db = Path(path)
    if db.exists():
        if db.stat().st_size == 0:
            raise StoreCorrupt(path, "the file is empty (0 bytes), no chain in it; "
                                     "restore it, or delete it to start a new chain")
        return True
    wal = Path(f"{path}-wal")
    if wal.exists():
        raise StoreCorrupt(path, f"the database is missing but {wal.name} is there; restore "
                                 f"the database, or delete {wal.name} to start a new chain")
    if marker_path(path).exists():
        try:
            marker = read_marker(path)
            held = f"block {marker.head}" if marker else "a chain"
        except MarkerUnreadable:
            held = "a chain"
        raise StoreCorrupt(path, f"the database is missing but {marker_path(path).name} says it "
                                 f"held {held}; restore the database, or delete "
                                 f"{marker_path(path).name} to start a new chain")
    return False
