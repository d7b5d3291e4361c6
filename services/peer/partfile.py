"""A download's bytes on disk: ``<downloads>/<name>.part`` until every book is in.

The one place the Requestor's loop opens, writes, syncs and renames a
download's file. ``PartFile.open`` creates and preallocates it (so a full disk
is found at once, not halfway), ``write_book`` puts a verified book at its
offset, ``sync`` makes what was written durable, ``finish`` renames it to its
final name, never over an existing file.

A ``DiskError`` says where it happened and whether waiting may cure it
(``transient``: the disk is full, over quota, or failed an I/O; the
Requestor then tries again with backoff) or not (permissions, a missing
folder: the user must act).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from services.peer.library import PART_SUFFIX, Library

TRANSIENT = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})  # errors that freeing space or time can cure


class DiskError(OSError):
    """The partial file cannot be created, written or synced (disk full, permissions, I/O)."""

    def __init__(self, code: int | None, message: str, where: Path | None = None) -> None:
        super().__init__(code, message)
        self.where = where

    @property
    def transient(self) -> bool:
        """Freeing space (or the disk recovering) may cure it: worth trying again later."""
        return self.errno in TRANSIENT


def free_bytes(path: Path) -> int:
    """Bytes an ordinary user may still write on the filesystem of ``path`` (or of its nearest existing folder)."""
    for folder in (path, *path.parents):
        try:
            info = os.statvfs(folder)
        except OSError:
            continue
        return info.f_bavail * info.f_frsize
    return 0


@dataclass
class PartFile:
    library: Library
    fd: int
    path: Path

    @classmethod
    def open(cls, library: Library, stuff_path: Path) -> PartFile:
        """Open (creating and preallocating) the partial file of a download bound for ``stuff_path``."""
        part = partial_path(stuff_path)
        try:
            part.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            reason = "a link is in the way; move it" if exc.errno == errno.ELOOP else exc.strerror
            raise DiskError(exc.errno, f"cannot create {part}: {reason}", part.parent) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or a device where the partial file goes: never written
            os.close(fd)
            raise DiskError(errno.EINVAL, f"cannot create {part}: something other than a file is in the way; move it",
                            part)
        size = 0
        try:
            size = os.fstat(fd).st_size
            if size != library.size:
                os.ftruncate(fd, library.size)
                if library.size:
                    os.posix_fallocate(fd, 0, library.size)
        except OSError as exc:
            _untruncate(fd, size, library.size)
            os.close(fd)
            reason = "disk full" if exc.errno == errno.ENOSPC else exc.strerror
            raise DiskError(exc.errno, f"cannot reserve {library.size} bytes for {part}: {reason}", part) from exc
        return cls(library, fd, part)

    def write(self, book: int, payload: memoryview | bytes) -> None:
        """pwrite a verified book at its offset; DiskError if it cannot be."""
        write_book(self.fd, self.library.book_span(book)[0], payload)

    def sync_fds(self) -> list[int]:
        """A duplicate of the file's descriptor, for the Syncer (which closes it)."""
        return [os.dup(self.fd)]

    def sync(self) -> None:
        """Make every book written so far durable (blocking)."""
        try:
            os.fdatasync(self.fd)
        except OSError as exc:
            raise DiskError(exc.errno, f"cannot sync {self.path}: {exc.strerror}", self.path) from exc

    def finish(self) -> Path:
        """Every book is in: sync, rename to the final name, return it."""
        self.sync()
        final = final_path(self.path, self.library)
        try:
            os.rename(self.path, final)
        except OSError as exc:
            raise DiskError(exc.errno, f"cannot rename {self.path} to {final}: {exc.strerror}", self.path) from exc
        return final

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _untruncate(fd: int, size: int, wanted: int) -> None:
    """A reservation failed: give the file its old size back, so the next open tries to reserve again
    (a file of the right size but with holes would pass for reserved)."""
    try:
        if os.fstat(fd).st_size == wanted != size:
            os.ftruncate(fd, size)
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
    """The download's final name; ``<name>.<8 hex of the id>`` if that is taken (names leave room for it)."""
    target = part.with_name(library.name)
    if target.exists():
        target = part.with_name(f"{library.name}.{library.id_hex[:8]}")
    return target


def partial_path(stuff_path: Path) -> Path:
    """Where a download's bytes live until every book is in."""
    return stuff_path.with_name(stuff_path.name + PART_SUFFIX)
