"""One library being downloaded: its picker, its partial file, its progress.

Books are verified against the library, written with ``pwrite`` into
``<downloads>/<name>.part`` and recorded in memory at once (so they can be
served). Durability runs in batches: ``begin_sync`` hands the books written
so far to an fdatasync (done off the loop, see syncer.py), and ``end_sync``
adds them to ``durable`` and persists that bitfield to state.db. A crash
therefore loses at most the books since the last finished sync and never
marks an unwritten book as held. ``finish`` renames the partial file to its
final name once every book is in and durable.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from services.peer.bitfield import Bitfield
from services.peer.library import Library
from services.peer.picker import Picker
from services.peer.state import LibraryRecord, State, Status
from services.runtime.logs import get_logger

BAN_THRESHOLD = 3
log = get_logger("debug")


class DiskError(OSError):
    """The partial file cannot be created or written (disk full, permissions)."""


@dataclass
class Download:
    library: Library
    record: LibraryRecord
    picker: Picker
    fd: int
    part_path: Path
    downloaded: int = 0
    fetched: int = 0
    durable: Bitfield = field(init=False)
    unsynced: list[int] = field(default_factory=list)
    syncing: list[int] | None = None
    verifying: set[int] = field(default_factory=set)
    strikes: dict[str, int] = field(default_factory=dict)
    banned: set[str] = field(default_factory=set)
    bad_books: int = 0

    def __post_init__(self) -> None:
        self.durable = Bitfield(self.library.books, self.picker.have.to_bytes())

    @property
    def id(self) -> bytes:
        return self.library.id

    @property
    def complete(self) -> bool:
        return self.picker.complete

    def record_written(self, book: int, length: int) -> None:
        """A verified book is on disk (not yet synced): count it and queue it for the next sync."""
        self.downloaded += length
        self.fetched += 1
        self.unsynced.append(book)

    def strike(self, peer: str) -> bool:
        """Count a bad book against ``peer``; True when it is now banned."""
        self.bad_books += 1
        self.strikes[peer] = self.strikes.get(peer, 0) + 1
        if self.strikes[peer] >= BAN_THRESHOLD:
            self.banned.add(peer)
            return True
        return False

    def begin_sync(self) -> bool:
        """Start a batch: True if there are written books to make durable and no batch runs."""
        if self.syncing is not None or not self.unsynced:
            return False
        self.syncing, self.unsynced = self.unsynced, []
        log.debug("books_written", library=self.library.id_hex, books=self.syncing)
        return True

    def end_sync(self, state: State) -> None:
        """The batch's fdatasync returned: its books are durable; persist them."""
        for book in self.syncing or ():
            self.durable.add(book)
        self.syncing = None
        state.save_progress(self.record.id, self.durable, self.downloaded, self.fetched)

    def sync_now(self, state: State) -> None:
        """Make every written book durable, blocking (shutdown, pause, finish)."""
        os.fdatasync(self.fd)
        self.unsynced = [*(self.syncing or ()), *self.unsynced]
        self.syncing = None
        if self.begin_sync():
            self.end_sync(state)

    @property
    def finishable(self) -> bool:
        return self.complete and self.syncing is None and not self.unsynced

    def finish(self, state: State) -> Path:
        """All books in and durable: rename to the final name, mark seeding."""
        self.sync_now(state)
        final = final_path(self.part_path, self.library)
        os.rename(self.part_path, final)
        state.set_status(self.record.id, Status.SEEDING, final)
        return final

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def write_book(fd: int, offset: int, payload: memoryview | bytes) -> None:
    """pwrite all of ``payload`` at ``offset``; raises DiskError (disk full, I/O error)."""
    view = memoryview(payload)
    written = 0
    try:
        while written < len(view):
            written += os.pwrite(fd, view[written:], offset + written)
    except OSError as exc:
        raise DiskError(exc.errno, f"cannot write book at offset {offset}: {exc.strerror}") from exc


def final_path(part: Path, library: Library) -> Path:
    target = part.with_name(library.name)
    if target.exists():
        target = part.with_name(f"{library.name}.{library.id_hex[:8]}")
    return target


def partial_path(stuff_path: Path) -> Path:
    """Where a download's bytes live until every book is in."""
    return stuff_path.with_name(stuff_path.name + ".part")


def open_partial(library: Library, record: LibraryRecord) -> tuple[int, Path]:
    """Open (creating and preallocating) the partial file of a download."""
    part = partial_path(record.stuff_path)
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DiskError(exc.errno, f"cannot create {part}: {exc.strerror}") from exc
    try:
        if os.fstat(fd).st_size != library.size:
            os.ftruncate(fd, library.size)
            if library.size:
                os.posix_fallocate(fd, 0, library.size)
    except OSError as exc:
        os.close(fd)
        reason = "disk full" if exc.errno == errno.ENOSPC else exc.strerror
        raise DiskError(exc.errno, f"cannot reserve {library.size} bytes for {part}: {reason}") from exc
    return fd, part
