"""The SQLite store (the default): an in-memory index written behind to SQLite.

How this works: reads are answered from a :class:`PeerIndex` in memory. Each
change is also noted in a pending map keyed by (library, player), last write
wins, and completed counters are noted by library. ``maintain(now)`` writes
all pending changes in one transaction with prepared ``executemany``
statements and, at most once a second, deletes rows that expired. On open,
the rows still live are loaded into the index, so a restarted hub knows its
players and forgets them at their stored absolute expiry time.

Durability: WAL with ``synchronous=NORMAL``; a crash loses at most the
changes since the last ``maintain`` (one broker tick), never the file. The
connection takes an exclusive lock, so a second hub on the same file fails
at open instead of silently diverging.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from services.hub.index import PeerIndex
from services.hub.model import LibraryCounts, PeerRecord, Totals

_SCHEMA = """
CREATE TABLE IF NOT EXISTS peers (
    library_id BLOB NOT NULL,
    player_id BLOB NOT NULL,
    endpoint TEXT NOT NULL,
    seed INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (library_id, player_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS peers_expiry ON peers (expires_at);
CREATE TABLE IF NOT EXISTS completed (
    library_id BLOB PRIMARY KEY,
    count INTEGER NOT NULL
) WITHOUT ROWID;
"""
_UPSERT = "INSERT OR REPLACE INTO peers VALUES (?, ?, ?, ?, ?)"
_DELETE = "DELETE FROM peers WHERE library_id = ? AND player_id = ?"
_COMPLETED = "INSERT OR REPLACE INTO completed VALUES (?, ?)"
_EXPIRE = "DELETE FROM peers WHERE expires_at <= ?"
_SWEEP_EVERY = 1.0


class StoreError(RuntimeError):
    """The database cannot be opened or written; the message says what to do."""


class SqliteStore:
    """A :class:`~services.hub.store.HubStore` that survives a hub restart."""

    name = "sqlite"

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self._conn = conn
        self._index = PeerIndex()
        self._pending: dict[tuple[bytes, bytes], PeerRecord | None] = {}
        self._completed: dict[bytes, int] = {}
        self._next_sweep = now
        self._load(now)

    @classmethod
    def open(cls, path: Path | None, now: float) -> SqliteStore:
        """Open (creating if needed) the database at ``path`` and load its live entries."""
        if path is None:
            raise StoreError("the sqlite store needs a database path (--db)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=0.5, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open hub database {path}: {exc}") from exc
        try:
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            return cls(conn, now)
        except sqlite3.Error as exc:
            conn.close()
            hint = "is another hub using it? stop it or choose another --db" if "locked" in str(exc) else ""
            raise StoreError(f"cannot use hub database {path}: {exc}; {hint or 'move it aside'}") from exc

    def _load(self, now: float) -> None:
        rows = self._conn.execute(
            "SELECT library_id, player_id, endpoint, seed, expires_at FROM peers WHERE expires_at > ?", (now,)
        )
        for library_id, player_id, endpoint, seed, expires_at in rows:
            self._index.put(PeerRecord(bytes(library_id), bytes(player_id), endpoint, bool(seed), expires_at), now)
        for library_id, count in self._conn.execute("SELECT library_id, count FROM completed"):
            self._index.add_completed(bytes(library_id), count)

    def upsert(self, record: PeerRecord, now: float) -> PeerRecord | None:
        self._pending[(record.library_id, record.player_id)] = record
        return self._index.put(record, now)

    def remove(self, library_id: bytes, player_id: bytes, now: float) -> PeerRecord | None:
        self._pending[(library_id, player_id)] = None
        return self._index.pop(library_id, player_id, now)

    def remove_endpoint(self, library_id: bytes, endpoint: str, now: float) -> list[bytes]:
        found = self._index.find_endpoint(library_id, endpoint, now)
        for player_id in found:
            self.remove(library_id, player_id, now)
        return found

    def find_endpoint(self, library_id: bytes, endpoint: str, now: float) -> list[bytes]:
        return self._index.find_endpoint(library_id, endpoint, now)

    def get(self, library_id: bytes, player_id: bytes, now: float) -> PeerRecord | None:
        return self._index.get(library_id, player_id, now)

    def sample(
        self,
        library_id: bytes,
        count: int,
        now: float,
        *,
        exclude: bytes = b"",
        seeds: bool = True,
        rng: random.Random,
    ) -> list[PeerRecord]:
        return self._index.sample(library_id, count, now, exclude, seeds, rng)

    def counts(self, library_id: bytes, now: float) -> LibraryCounts:
        return self._index.counts(library_id, now)

    def add_completed(self, library_id: bytes) -> None:
        self._completed[library_id] = self._index.add_completed(library_id)

    def libraries_of(self, player_id: bytes, now: float) -> int:
        return self._index.libraries_of(player_id, now)

    def totals(self, now: float) -> Totals:
        return self._index.totals(now)

    def maintain(self, now: float) -> None:
        self._index.expire(now)
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + _SWEEP_EVERY
        self._write(now if sweep else None)

    def close(self) -> None:
        try:
            self._write(None)
        finally:
            self._conn.close()

    def _write(self, expire_before: float | None) -> None:
        if not self._pending and not self._completed and expire_before is None:
            return
        pending, self._pending = self._pending, {}
        completed, self._completed = self._completed, {}
        upserts = [
            (r.library_id, r.player_id, r.endpoint, int(r.seed), r.expires_at)
            for r in pending.values()
            if r is not None
        ]
        deletes = [key for key, r in pending.items() if r is None]
        try:
            with self._conn:
                self._conn.execute("BEGIN")
                self._conn.executemany(_UPSERT, upserts)
                self._conn.executemany(_DELETE, deletes)
                self._conn.executemany(_COMPLETED, list(completed.items()))
                if expire_before is not None:
                    self._conn.execute(_EXPIRE, (expire_before,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the hub database: {exc}; check disk space and permissions") from exc
