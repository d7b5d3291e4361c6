"""The SQLite store (the default): an in-memory index written behind to SQLite.

How this works: reads are answered from a :class:`PeerIndex` in memory. Each
change is also noted in a pending map keyed by (library, player), last write
wins, and completed counters are noted by library. ``maintain(now)`` writes
the pending changes, and deletes the rows of entries that expired, in one
transaction of prepared ``executemany`` statements. On open, the rows still
live are loaded into the index, so a restarted hub knows its players and
forgets them at their stored absolute expiry time.

Each row keeps the peer as replies encode it (``wire``, with the key the player
announced with), so a restarted hub hands players out with their keys at once.
A schema 1 file (before keys) gains the column on open; its rows are encoded
anew, without a key, until their players announce again.

A refresh (same endpoint, seed status and key, later expiry) is written only when
the stored expiry would otherwise lag the live one by ``refresh_slack``
seconds or more (the hub passes half an announce interval). Frequent
re-announces then cost no disk writes; after a restart an entry may expire
up to ``refresh_slack`` early, still more than an interval after its last
announce.

Durability: WAL with ``synchronous=NORMAL``; a crash loses at most the
changes since the last ``maintain`` (one broker tick), never the file. The
connection takes an exclusive lock, so a second hub on the same file fails
at open instead of silently diverging.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from services.hub.encode import peer_field
from services.hub.model import PeerRecord
from services.hub.store_errors import StoreError
from services.hub.store_memory import MemoryStore

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS peers (
    library_id BLOB NOT NULL,
    player_id BLOB NOT NULL,
    endpoint TEXT NOT NULL,
    seed INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    wire BLOB NOT NULL DEFAULT x'',
    PRIMARY KEY (library_id, player_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS completed (
    library_id BLOB PRIMARY KEY,
    count INTEGER NOT NULL
) WITHOUT ROWID;
"""
_UPSERT = "INSERT OR REPLACE INTO peers VALUES (?, ?, ?, ?, ?, ?)"
_DELETE = "DELETE FROM peers WHERE library_id = ? AND player_id = ?"
_EXPIRE = "DELETE FROM peers WHERE library_id = ? AND player_id = ? AND expires_at <= ?"
_COMPLETED = "INSERT OR REPLACE INTO completed VALUES (?, ?)"

Key = tuple[bytes, bytes]


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=0.5, isolation_level=None, check_same_thread=False)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:  # refused before anything is written: the file is left as it was
            raise StoreError(f"{path} has hub schema version {version}, newer than this hub's {SCHEMA_VERSION}: it "
                             f"was written by a newer hub; upgrade this hub, or move the file aside to start empty")
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -32768")
        if version == 1:
            conn.execute("ALTER TABLE peers ADD COLUMN wire BLOB NOT NULL DEFAULT x''")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteStore(MemoryStore):
    """A :class:`~services.hub.store.HubStore` that survives a hub restart (reads as :class:`MemoryStore`)."""

    name = "sqlite"

    def __init__(self, conn: sqlite3.Connection, now: float, refresh_slack: float = 0.0) -> None:
        super().__init__(track_expired=True)
        self._conn = conn
        self._slack = refresh_slack
        self._pending: dict[Key, PeerRecord | None] = {}
        self._persisted: dict[Key, float] = {}  # expires_at as stored, for live entries
        self._completed: dict[bytes, int] = {}
        self._load(now)

    @classmethod
    def open(cls, path: Path | None, now: float, *, refresh_slack: float = 0.0, url: str = "") -> SqliteStore:
        """Open (creating if needed) the database at ``path`` and load its live entries (``url`` is unused)."""
        if path is None:
            raise StoreError("the sqlite store needs a database path (--db)")
        try:
            return cls(_connect(path), now, refresh_slack)
        except (OSError, sqlite3.Error) as exc:
            locked = "locked" in str(exc)
            hint = "is another hub using it? stop it or choose another --db" if locked else "move it aside"
            raise StoreError(f"cannot use hub database {path}: {exc}; {hint}") from exc

    def _load(self, now: float) -> None:
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.execute("DELETE FROM peers WHERE expires_at <= ?", (now,))
        rows = self._conn.execute("SELECT library_id, player_id, endpoint, seed, expires_at, wire FROM peers")
        for library_id, player_id, endpoint, seed, expires_at, stored in rows:
            library_id, player_id, seed = bytes(library_id), bytes(player_id), bool(seed)
            wire = bytes(stored) or peer_field(player_id, endpoint, seed)
            self._index.put(PeerRecord(library_id, player_id, endpoint, seed, expires_at, wire), now)
            self._persisted[(library_id, player_id)] = expires_at
        for library_id, count in self._conn.execute("SELECT library_id, count FROM completed"):
            self._index.add_completed(bytes(library_id), count)

    def upsert(self, record: PeerRecord, now: float) -> PeerRecord | None:
        old = self._index.put(record, now)
        key = (record.library_id, record.player_id)
        if old is not None and old.wire == record.wire:  # the same endpoint, seed status and key
            persisted = self._persisted.get(key)
            if persisted is not None and record.expires_at - persisted < self._slack:
                return old
        self._pending[key] = record
        return old

    def remove(self, library_id: bytes, player_id: bytes, now: float) -> PeerRecord | None:
        self._pending[(library_id, player_id)] = None
        return self._index.pop(library_id, player_id, now)

    def add_completed(self, library_id: bytes) -> None:
        self._completed[library_id] = self._index.add_completed(library_id)

    def maintain(self, now: float) -> None:
        self._index.expire(now)
        self._write()

    def close(self) -> None:
        try:
            self._write()
        finally:
            self._conn.close()

    def _write(self) -> None:
        expired, self._index.expired = self._index.expired, []
        if not self._pending and not self._completed and not expired:
            return
        pending, self._pending = self._pending, {}
        completed, self._completed = self._completed, {}
        upserts = [r for r in pending.values() if r is not None]
        deletes = [key for key, r in pending.items() if r is None]
        for record in expired:
            self._persisted.pop((record.library_id, record.player_id), None)
        for key in deletes:
            self._persisted.pop(key, None)
        for record in upserts:
            self._persisted[(record.library_id, record.player_id)] = record.expires_at
        try:
            with self._conn:
                self._conn.execute("BEGIN")
                rows = [(r.library_id, r.player_id, r.endpoint, int(r.seed), r.expires_at, r.wire) for r in upserts]
                self._conn.executemany(_UPSERT, rows)
                self._conn.executemany(_DELETE, deletes)
                self._conn.executemany(_EXPIRE, [(r.library_id, r.player_id, r.expires_at) for r in expired])
                self._conn.executemany(_COMPLETED, list(completed.items()))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the hub database: {exc}; check disk space and permissions") from exc
