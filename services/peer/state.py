"""The player's persistent state: ``<data>/state.db`` (SQLite, WAL).

One row per library the player knows: where its .lib and its stuff are, its
status, and the bitfield of books *written to disk*. Crash consistency: the
Requestor adds a book to the bitfield only after its bytes are written (and
fsynced in the batch that is committed), so a crash can lose books in flight
but never mark an unwritten book as held.

Both the Requestor and the Distributor open the database; each process uses
its own connection from its own thread.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.peer.bitfield import Bitfield

SCHEMA_VERSION = 2  # PRAGMA user_version of a state.db this code writes
# Each migration takes a file from the version it is indexed by to the next one, in one transaction.
# Version 0 is every file written before state.db had a version: the table, with or without `selection`.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    ("""CREATE TABLE IF NOT EXISTS libraries (
        id TEXT PRIMARY KEY,
        lib_path TEXT NOT NULL,
        stuff_path TEXT NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        books INTEGER NOT NULL,
        status TEXT NOT NULL,
        have BLOB NOT NULL,
        uploaded INTEGER NOT NULL DEFAULT 0,
        downloaded INTEGER NOT NULL DEFAULT 0,
        fetched INTEGER NOT NULL DEFAULT 0,
        added_at REAL NOT NULL,
        completed_at REAL
    )""", "ADD COLUMN selection TEXT NOT NULL DEFAULT ''"),
    # 1 -> 2: why a library is in error or stopped, and the command to run once it is complete
    ("ADD COLUMN reason TEXT NOT NULL DEFAULT ''", "ADD COLUMN on_complete TEXT NOT NULL DEFAULT ''"),
)
ONLY_SEPARATOR = "\n"  # globs of `emma get --only`, joined (a glob never holds a newline: refused at the CLI)


class StateError(RuntimeError):
    """A state.db this code cannot use; the message says why and what to do."""


class StateVersionError(StateError):
    """A state.db this code cannot use: written by a newer Emma, or not yet migrated (read-only)."""


class StateDamagedError(StateError):
    """A state.db SQLite cannot open or read: truncated, overwritten, or something else in its place."""


class Status(enum.Enum):
    DOWNLOADING = "downloading"
    SEEDING = "seeding"
    PAUSED = "paused"
    ERROR = "error"
    STOPPED = "stopped"  # complete, and not served: paused by the user or by a seeding limit


@dataclass
class LibraryRecord:
    id: str
    lib_path: Path
    stuff_path: Path
    name: str
    size: int
    books: int
    status: Status
    have: Bitfield
    uploaded: int
    downloaded: int
    fetched: int
    added_at: float
    completed_at: float | None
    only: tuple[str, ...] = ()  # a tree's files to fetch, as globs (tree.Tree.select); none: every file
    reason: str = ""  # why it is in error or stopped, and what to do (empty otherwise)
    on_complete: str = ""  # `emma get --on-complete`: the command run with the path once complete


class State:
    """Typed access to state.db, the only one: nothing else reads or writes the file. Not shared between threads.

    Opening a file of an older schema migrates it forward (each step in one transaction); a file of a newer
    schema raises StateVersionError naming both versions. ``State.reader`` opens it read-only (tools, tests,
    other processes that only look).
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        try:
            if read_only:
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            if read_only:  # a tool that only looks, maybe before the player made the file: SQLite's own error
                raise
            raise self._damaged(exc) from exc
        try:
            self.db.execute("PRAGMA busy_timeout=30000")
            self._refuse_newer()  # before anything is written: a newer file is left as it was
            if not read_only:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
            self._check_version(read_only)
            self._seen = self._data_version()
        except sqlite3.Error as exc:
            self.db.close()
            if read_only:
                raise
            raise self._damaged(exc) from exc
        except BaseException:
            self.db.close()
            raise

    def _damaged(self, exc: sqlite3.Error) -> StateError:
        """Why state.db cannot be opened, and what to do: a damaged file (truncated, overwritten) is moved aside."""
        if (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return StateDamagedError(
                f"{self.path} is damaged ({exc}): move it aside (`mv {self.path} {self.path}.damaged`) and start "
                "again; the libraries of libs/ are then downloaded anew (a folder's files already on disk are kept), "
                "and what you shared must be shared again")
        return StateError(f"cannot use {self.path}: {exc}; check that its folder can be written and has free space")

    @classmethod
    def reader(cls, path: Path) -> State | None:
        """``path`` opened read-only, or None when there is no such file yet."""
        if not path.exists():
            return None
        return cls(path, read_only=True)

    def _refuse_newer(self) -> None:
        version = self.version()
        if version > SCHEMA_VERSION:
            raise StateVersionError(
                f"{self.path} has state schema version {version}, newer than this Emma's {SCHEMA_VERSION}: it was "
                f"written by a newer version; upgrade Emma, or move the file aside to start without its libraries")

    def _check_version(self, read_only: bool) -> None:
        version = self.version()
        if version == SCHEMA_VERSION:
            return
        if read_only:
            raise StateVersionError(f"{self.path} has state schema version {version}, this Emma's is "
                                    f"{SCHEMA_VERSION}: start the player once to migrate it")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = self.version()  # another process may have migrated it meanwhile
            for step in _MIGRATIONS[version:]:
                self._migrate(step)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _migrate(self, step: tuple[str, ...]) -> None:
        for statement in step:
            if statement.startswith("ADD COLUMN "):
                column = statement.split()[2]
                present = {row[1] for row in self.db.execute("PRAGMA table_info(libraries)")}
                if column not in present:  # files of version 0 may have it already
                    self.db.execute(f"ALTER TABLE libraries {statement}")
            else:
                self.db.execute(statement)

    def version(self) -> int:
        """The schema version of the file (SCHEMA_VERSION once opened writable)."""
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _data_version(self) -> int:
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> bool:
        """Whether another connection (another process) committed to state.db since the last call.

        One cheap query (SQLite's ``PRAGMA data_version``): how a process notices what others wrote
        without reading every row.
        """
        now = self._data_version()
        if now == self._seen:
            return False
        self._seen = now
        return True

    def close(self) -> None:
        self.db.close()

    def upsert(
        self, *, library_id: str, lib_path: Path, stuff_path: Path, name: str, size: int, books: int,
        status: Status, have: Bitfield, only: tuple[str, ...] = (),
    ) -> None:
        """Record a library; an existing row keeps its counters and bitfield unless seeding.

        A selection (``only``) given for a row that has fetched nothing yet replaces its own: the
        Requestor may have recorded the library from libs/ between `emma get --only` putting it
        there and recording it.
        """
        now = time.time()
        completed = now if status is Status.SEEDING else None
        self.db.execute(
            """INSERT INTO libraries (id, lib_path, stuff_path, name, size, books, status, have, added_at,
                   completed_at, selection)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET lib_path=excluded.lib_path,
                   stuff_path=CASE WHEN excluded.status='seeding' THEN excluded.stuff_path ELSE stuff_path END,
                   status=CASE WHEN excluded.status='seeding' THEN 'seeding' ELSE status END,
                   have=CASE WHEN excluded.status='seeding' THEN excluded.have ELSE have END,
                   selection=CASE WHEN excluded.selection != '' AND status = 'downloading' AND fetched = 0
                       THEN excluded.selection ELSE selection END,
                   completed_at=COALESCE(completed_at, excluded.completed_at)""",
            (library_id, str(lib_path), str(stuff_path), name, size, books, status.value, have.to_bytes(),
             now, completed, ONLY_SEPARATOR.join(only)),
        )

    def get(self, library_id: str) -> LibraryRecord | None:
        row = self.db.execute("SELECT * FROM libraries WHERE id = ?", (library_id,)).fetchone()
        return _record(row) if row else None

    def all(self) -> list[LibraryRecord]:
        return [_record(r) for r in self.db.execute("SELECT * FROM libraries ORDER BY added_at")]

    def ids(self) -> set[str]:
        """The id of every library known here."""
        return {str(row[0]) for row in self.db.execute("SELECT id FROM libraries")}

    def find(self, prefix: str) -> list[LibraryRecord]:
        rows = self.db.execute("SELECT * FROM libraries WHERE id LIKE ? ORDER BY added_at", (prefix + "%",))
        return [_record(r) for r in rows]

    def save_progress(self, library_id: str, have: Bitfield, downloaded: int, fetched: int) -> None:
        """Persist books already written and synced; call after the fsync of their batch."""
        self.db.execute(
            "UPDATE libraries SET have = ?, downloaded = ?, fetched = ? WHERE id = ?",
            (have.to_bytes(), downloaded, fetched, library_id),
        )

    def set_status(self, library_id: str, status: Status, stuff_path: Path | None = None, reason: str = "") -> None:
        """Change the status; ``reason`` says why (an error, a stop) and what to do, and is cleared otherwise."""
        completed = time.time() if status is Status.SEEDING else None
        self.db.execute(
            "UPDATE libraries SET status = ?, stuff_path = COALESCE(?, stuff_path),"
            " completed_at = COALESCE(completed_at, ?), reason = ? WHERE id = ?",
            (status.value, str(stuff_path) if stuff_path else None, completed, reason, library_id),
        )

    def set_on_complete(self, library_id: str, command: str) -> None:
        self.db.execute("UPDATE libraries SET on_complete = ? WHERE id = ?", (command, library_id))

    def select(self, library_id: str, only: tuple[str, ...], status: Status) -> None:
        """Change which files of a tree are fetched (none: every file), and the status that follows."""
        self.db.execute("UPDATE libraries SET selection = ?, status = ? WHERE id = ?",
                        (ONLY_SEPARATOR.join(only), status.value, library_id))

    def stuff_paths(self) -> set[Path]:
        """Where every library known here is, or goes."""
        return {Path(str(row[0])) for row in self.db.execute("SELECT stuff_path FROM libraries")}

    def add_uploaded(self, library_id: str, amount: int) -> None:
        self.db.execute("UPDATE libraries SET uploaded = uploaded + ? WHERE id = ?", (amount, library_id))

    def remove(self, library_id: str) -> None:
        self.db.execute("DELETE FROM libraries WHERE id = ?", (library_id,))


def _record(row: Any) -> LibraryRecord:
    (lid, lib_path, stuff_path, name, size, books, status, have, uploaded, downloaded, fetched, added,
     completed, only, reason, on_complete) = row
    return LibraryRecord(
        id=str(lid), lib_path=Path(str(lib_path)), stuff_path=Path(str(stuff_path)), name=str(name),
        size=int(size), books=int(books), status=Status(status), have=Bitfield(int(books), bytes(have)),
        uploaded=int(uploaded), downloaded=int(downloaded), fetched=int(fetched),
        added_at=float(added), completed_at=float(completed) if completed is not None else None,
        only=tuple(str(only).split(ONLY_SEPARATOR)) if only else (), reason=str(reason),
        on_complete=str(on_complete),
    )
