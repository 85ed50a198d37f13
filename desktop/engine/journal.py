"""The journal: one SQLite row per file version, the only truth about what must be uploaded and where.

A version is a (path, size, mtime) seen stable on disk. Its row records the sha256 we declare, the tus
URL (stored before the first byte is sent, so a crash can resume with a HEAD), the offset the server
confirmed, state, attempts and the last error. The newest version of a path is `current`; an older one
that never finished is `superseded` and never uploaded. `removed` rows are files the user took off the
queue (or that vanished): the same version is not queued again, a changed one is. The states are in
`states.py`.

Upload-only: nothing here ever leads to a DELETE on the server.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .states import ACTIVE, QUEUED, SUPERSEDED

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    root TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    snapshot INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT,
    url TEXT,
    "offset" INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    current INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS versions_current ON versions (server, current, path);
CREATE INDEX IF NOT EXISTS versions_done ON versions (server, path, sha256) WHERE state = 'done';
"""

_COLUMNS = ("id", "server", "root", "path", "size", "mtime_ns", "snapshot", "sha256", "url", "offset", "state",
            "attempts", "restarts", "error", "current", "created", "updated")
_SELECT = "SELECT " + ", ".join(f'"{c}"' for c in _COLUMNS) + " FROM versions"
_UPDATABLE = frozenset({"sha256", "url", "offset", "state", "attempts", "restarts", "error"})


@dataclass(frozen=True)
class Version:
    id: int
    server: str
    root: str
    path: str
    size: int
    mtime_ns: int
    snapshot: bool
    sha256: str | None
    url: str | None
    offset: int
    state: str
    attempts: int
    restarts: int  # times the upload was started over from scratch after a 460
    error: str | None
    current: bool
    created: float
    updated: float


@dataclass(frozen=True)
class NewVersion:
    root: str
    path: str
    size: int
    mtime_ns: int
    snapshot: bool = False


def _version(row: tuple[Any, ...]) -> Version:
    v = dict(zip(_COLUMNS, row, strict=True))
    v["snapshot"] = bool(v["snapshot"])
    v["current"] = bool(v["current"])
    return Version(**v)


class Journal:
    """Thread-safe: one connection guarded by a lock (SQLite serialises writers anyway)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: an app crash loses nothing
        self._db.executescript(_SCHEMA)  # idempotent; executescript manages its own transaction

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, where: str, args: Iterable[Any] = ()) -> list[Version]:
        with self._lock:
            return [_version(r) for r in self._db.execute(f"{_SELECT} WHERE {where}", tuple(args))]

    def get(self, version_id: int) -> Version | None:
        rows = self._query("id = ?", (version_id,))
        return rows[0] if rows else None

    def current(self, server: str, path: str) -> Version | None:
        rows = self._query("server = ? AND current = 1 AND path = ?", (server, path))
        return rows[0] if rows else None

    def current_rows(self, server: str, states: Iterable[str] | None = None) -> list[Version]:
        if states is None:
            return self._query("server = ? AND current = 1 ORDER BY id", (server,))
        wanted = tuple(states)
        marks = ", ".join("?" * len(wanted))
        return self._query(f"server = ? AND current = 1 AND state IN ({marks}) ORDER BY id", (server, *wanted))

    def known_stats(self, server: str) -> dict[str, tuple[int, int]]:
        """path -> (size, mtime_ns) of every current version: what a scan compares the disk with."""
        with self._lock:
            rows = self._db.execute("SELECT path, size, mtime_ns FROM versions WHERE server = ? AND current = 1",
                                    (server,))
            return {path: (size, mtime) for path, size, mtime in rows}

    def add_versions(self, server: str, new: Iterable[NewVersion]) -> list[Version]:
        """Record new stable versions (queued) in one transaction; older versions stop being current."""
        now = time.time()
        ids: list[int] = []
        with self._transaction() as db:
            for v in new:
                db.execute(f"UPDATE versions SET state = CASE WHEN state IN ({', '.join('?' * len(ACTIVE))}) "
                           "THEN ? ELSE state END, current = 0, updated = ? "
                           "WHERE server = ? AND path = ? AND current = 1",
                           (*ACTIVE, SUPERSEDED, now, server, v.path))
                cur = db.execute("INSERT INTO versions (server, root, path, size, mtime_ns, snapshot, state, "
                                 "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 (server, v.root, v.path, v.size, v.mtime_ns, int(v.snapshot), QUEUED, now, now))
                ids.append(int(cur.lastrowid or 0))
        if not ids:
            return []
        return self._query(f"id IN ({', '.join('?' * len(ids))}) ORDER BY id", ids)

    def update(self, version_id: int, **changes: Any) -> Version:
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        sets = ", ".join(f'"{k}" = ?' for k in changes)
        with self._transaction() as db:
            db.execute(f"UPDATE versions SET {sets}, updated = ? WHERE id = ?",
                       (*changes.values(), time.time(), version_id))
        row = self.get(version_id)
        if row is None:
            raise KeyError(version_id)
        return row

    def uploaded_before(self, server: str, path: str, sha256: str) -> Version | None:
        """A finished upload of the same content from the same path to the same server, if any."""
        rows = self._query("server = ? AND path = ? AND sha256 = ? AND state = 'done' ORDER BY id DESC LIMIT 1",
                           (server, path, sha256))
        return rows[0] if rows else None
