"""SQLite persistence for simnet: namespaced JSON rows, written back when dirty.

The chain state lives in memory as ``{namespace: {key: json-able value}}``; callers mark
the rows they change with ``touch`` and ``flush`` writes them (and deletions) in one
transaction. One row per account, subnet, neuron, stake position, commitment and receipt
keeps a block's write small even on a full subnet.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from .codec import decode, encode

NAMESPACES = ("meta", "accounts", "subnets", "neurons", "stake", "owners",
              "commitments", "receipts", "events", "commits")


class Store:
    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (ns TEXT, key TEXT, value TEXT, "
                         "PRIMARY KEY (ns, key))")
        self._db.commit()
        self._lock = threading.Lock()
        self.data: dict[str, dict[str, Any]] = {ns: {} for ns in NAMESPACES}
        self._dirty: set[tuple[str, str]] = set()
        for ns, key, value in self._db.execute("SELECT ns, key, value FROM kv"):
            self.data.setdefault(ns, {})[key] = decode(json.loads(value))

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
            dirty, self._dirty = self._dirty, set()
            rows, gone = [], []
            for ns, key in dirty:
                if key in self.data[ns]:
                    rows.append((ns, key, json.dumps(encode(self.data[ns][key]))))
                else:
                    gone.append((ns, key))
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", rows)
                self._db.executemany("DELETE FROM kv WHERE ns = ? AND key = ?", gone)

    def close(self) -> None:
        self.flush()
        self._db.close()
