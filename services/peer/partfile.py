"""A download's bytes on disk: ``<downloads>/<name>.part`` until every book is in.

The one place the Requestor's loop opens, writes, syncs and renames a
download's file. ``PartFile.open`` creates and preallocates it (so a full disk
is found at once, not halfway), ``write_book`` puts a verified book at its
offset, ``sync`` makes what was written durable, ``finish`` renames it to its
final name (``<name>``, else ``<name>.<8 hex of the id>``), never over an existing file:
if both are taken the download fails saying so, its partial file kept.

Never fetched twice: ``look`` (run off the loop: it reads the whole file) checks, before a
download with nothing held asks anyone for anything, what its place already holds. A file at
one of its final names (``<name>``, ``<name>.<8 hex of the id>``) of the library's size is
read book by book: if every book matches, it is the library (state.db lost, a library removed
and added again) and is seeded where it is (``HeldFile``); if any book differs, it is someone
else's file and is never written, its good books only copied into our own partial file. The
partial file's own good books are kept too (a download killed before its first sync).

A ``DiskError`` says where it happened and whether waiting may cure it
(``transient``: the disk is full, over quota, or failed an I/O; the
Requestor then tries again with backoff) or not (permissions, a missing
folder: the user must act).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
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
        taken = []
        for final in final_names(self.path, self.library):
            try:
                _rename_new(self.path, final)
            except FileExistsError:
                taken.append(str(final))
                continue
            except OSError as exc:
                raise DiskError(exc.errno, f"cannot rename {self.path} to {final}: {exc.strerror}",
                                self.path) from exc
            return final
        raise DiskError(errno.EEXIST, f"cannot name {self.path} complete: {' and '.join(taken)} are other files, "
                                      f"never replaced; move one away", self.path)

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
    """The name ``finish`` would give the download now: the first of ``final_names`` that nothing bears."""
    first, second = final_names(part, library)
    return second if os.path.lexists(first) else first


def _rename_new(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` unless something is there (FileExistsError): a link then an unlink, which
    never replaces, as rename does; a plain rename where the file system has no links (checked just before)."""
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "file exists", str(target)) from exc
        os.rename(source, target)
        return
    os.unlink(source)


def partial_path(stuff_path: Path) -> Path:
    """Where a download's bytes live until every book is in."""
    return stuff_path.with_name(stuff_path.name + PART_SUFFIX)


def final_names(stuff_path: Path, library: Library) -> tuple[Path, Path]:
    """The names a complete download bound for ``stuff_path`` may bear, in the order ``finish`` tries them:
    ``<name>``, then ``<name>.<8 hex of the id>`` (names leave room for it)."""
    return stuff_path.with_name(library.name), stuff_path.with_name(f"{library.name}.{library.id_hex[:8]}")


@dataclass
class Found:
    """What ``look`` found at a download's place."""

    good: list[int] = field(default_factory=list)  # books now held in the partial file (or in ``adopted``)
    adopted: Path | None = None  # a file holding every book: the download is complete there
    read: list[Path] = field(default_factory=list)  # files of the library's size that were checked
    copied: int = 0  # books copied into the partial file from a file that is not ours
    errors: list[str] = field(default_factory=list)  # what could not be read (those books are fetched)
    disk_error: DiskError | None = None  # the partial file could not be made or written


def worth_a_look(library: Library, stuff_path: Path) -> bool:
    """Whether a file of the library's size stands where the download goes (a few lstats: cheap on the loop)."""
    return any(_sized(path, library.size) for path in (*final_names(stuff_path, library), partial_path(stuff_path)))


def look(library: Library, stuff_path: Path) -> Found:
    """In a worker thread: the books a download bound for ``stuff_path`` holds already (see the module's note).
    Reads a file that is not ours, never writes it; never raises for one file's trouble."""
    found = Found()
    part = partial_path(stuff_path)
    ours = set(_good_books(library, part, found))
    others: dict[int, Path] = {}
    for path in final_names(stuff_path, library):
        good = _good_books(library, path, found)
        if len(good) == library.books and path in found.read:
            found.adopted, found.good = path, good
            return found
        for book in good:
            others.setdefault(book, path)
    missing = sorted(book for book in others if book not in ours)
    if not ours and not missing:
        return found
    try:
        held = PartFile.open(library, stuff_path)
    except DiskError as exc:
        found.disk_error = exc
        return found
    try:
        copied = _copy_books(library, others, missing, held, found)
        held.sync()  # what is recorded held is durable first
    except DiskError as exc:
        found.disk_error = exc
        return found
    finally:
        held.close()
    found.copied = len(copied)
    found.good = sorted({*ours, *copied})
    return found


def _sized(path: Path, size: int) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == size


def _good_books(library: Library, path: Path, found: Found) -> list[int]:
    """The books ``path`` holds, right length and right hash, if it is a regular file of the library's size
    (not followed if a link); [] otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ELOOP, errno.EISDIR):
            found.errors.append(f"{path}: {exc.strerror}")
        return []
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != library.size:
            return []
        found.read.append(path)
        good = []
        buf = bytearray(library.book_size)
        for book in range(library.books):
            if _read_good(library, fd, book, buf):
                good.append(book)
        return good
    except OSError as exc:
        found.errors.append(f"{path}: {exc.strerror}")
        return []
    finally:
        os.close(fd)


def _read_good(library: Library, fd: int, book: int, buf: bytearray) -> memoryview | None:
    """``book`` read from ``fd`` if it is whole and matches its hash, else None."""
    offset, length = library.book_span(book)
    view = memoryview(buf)[:length]
    return view if os.preadv(fd, [view], offset) == length and library.verify_book(book, view) else None


def _copy_books(library: Library, sources: dict[int, Path], books: list[int], part: PartFile,
                found: Found) -> list[int]:
    """Copy ``books`` into ``part`` from the file each was found good in, each verified again as it is read
    (the file is not ours: it may have changed since); the books copied."""
    copied: list[int] = []
    buf = bytearray(library.book_size)
    fds: dict[Path, int] = {}
    try:
        for book in books:
            path = sources[book]
            try:
                if path not in fds:
                    fds[path] = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
                view = _read_good(library, fds[path], book, buf)
            except OSError as exc:
                found.errors.append(f"{path}: {exc.strerror}")
                continue
            if view is not None:
                part.write(book, view)
                copied.append(book)
    finally:
        for fd in fds.values():
            os.close(fd)
    return copied


@dataclass
class HeldFile:
    """A complete download found at one of its final names (``look``): seeded where it is, never written."""

    library: Library
    path: Path

    def write(self, book: int, payload: memoryview | bytes) -> None:
        raise DiskError(errno.EBADF, f"{self.path} is complete and not written", self.path)

    def sync_fds(self) -> list[int]:
        return []

    def sync(self) -> None:
        """Nothing was written."""

    def finish(self) -> Path:
        return self.path

    def close(self) -> None:
        """Nothing is open."""
