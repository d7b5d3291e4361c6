"""A tree library's files on disk: books written and read in place, in the file each lies in.

A tree downloads in place: file ``p`` of the library goes to ``<root>/p`` from the start
(no ``.part`` names: the download's state says whether it is complete, and a file already
at its place is checked and kept, see localdata.py). ``TreeFiles.create`` makes the
folders (the empty ones too) and gives every selected file its size, after checking the
disk has room for what they lack (a full disk is found at once, not halfway; the files are
sparse until written: reserving each file's blocks cost more than the download of a tree of
small files); files not selected are not created at all.

A tree may hold more files than a process may open, so descriptors are opened when a book
needs them and kept in an LRU (``open_limit``: a quarter of the process's descriptor
limit, at most MAX_OPEN). A file is opened without O_CREAT when it exists (creating takes
its folder's lock, which the Syncer's fdatasync of a neighbour may hold). A written file's descriptor closed by
the LRU before its sync is not lost: it waits, open, for the next ``sync_fds``, which hands
it (and a duplicate of every other written file's descriptor) to the Syncer. Files are
opened with O_NOFOLLOW, and their folders one by one from the root, each with O_NOFOLLOW
(``open_beneath``): a link put where a file or a folder of the tree goes is refused, never
written or read through (O_NOFOLLOW alone guards only a path's last component).
"""

from __future__ import annotations

import errno
import os
import resource
import stat
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from services.peer.library import Library
from services.peer.partfile import DiskError, free_bytes, write_book

MAX_OPEN = 1024  # descriptors one tree keeps open at once, at most


_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_beneath(root: Path, relative: str, flags: int, mode: int = 0o644, *, make_folders: bool = False) -> int:
    """Open ``root/relative`` following no link below ``root``: each folder of ``relative`` is opened from
    the one before with O_NOFOLLOW (made first with ``make_folders``), then the file, with O_NOFOLLOW too.
    OSError ELOOP (or ENOTDIR) where a link or a file stands in the way."""
    *folders, name = relative.split("/")
    parent = _folder_beneath(root, folders, make=make_folders)
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent)
    except OSError as exc:
        exc.filename = str(root / relative)
        raise
    finally:
        os.close(parent)


def make_folder_beneath(root: Path, relative: str) -> None:
    """Make the folder ``root/relative`` and those it lies in, following no link below ``root``."""
    os.close(_folder_beneath(root, relative.split("/"), make=True))


def _folder_beneath(root: Path, parts: list[str], *, make: bool) -> int:
    """A descriptor of the folder ``root/parts...``, each part opened from the one before with O_NOFOLLOW."""
    parent = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for n, part in enumerate(parts):
        try:
            if make:
                try:
                    os.mkdir(part, 0o755, dir_fd=parent)
                except FileExistsError:
                    pass
            inner = os.open(part, _FOLDER, dir_fd=parent)
        except OSError as exc:
            os.close(parent)
            exc.filename = str(root.joinpath(*parts[: n + 1]))
            raise
        os.close(parent)
        parent = inner
    return parent


def linked_folder(root: Path, relative: str) -> bool:
    """Whether a link stands where a folder of ``relative`` goes under ``root`` (what open_beneath refuses)."""
    folder = root
    for part in relative.split("/")[:-1]:
        folder = folder / part
        if folder.is_symlink():
            return True
    return False


def open_limit() -> int:
    """Descriptors one tree may keep open: a quarter of this process's limit, at most MAX_OPEN, at least 16."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(MAX_OPEN, soft // 4 if soft != resource.RLIM_INFINITY else MAX_OPEN))


class TreeFiles:
    """The files of ``library`` under ``root``, read-only (the Distributor) or also written (the Requestor)."""

    def __init__(self, library: Library, root: Path, *, writable: bool) -> None:
        if library.tree is None:
            raise ValueError("TreeFiles needs a tree library")
        self.library = library
        self.tree = library.tree
        self.path = root
        self.writable = writable
        self.open_fds: OrderedDict[int, int] = OrderedDict()  # file index -> fd, least recently used first
        self.limit = open_limit()
        self.written: set[int] = set()  # files written since the last sync_fds
        self.retired: list[int] = []  # fds of written files the LRU closed before their sync: the Syncer closes them

    @classmethod
    def create(cls, library: Library, root: Path, selected: Iterable[int]) -> TreeFiles:
        """Make the folders and give each selected file its size; DiskError if the disk refuses."""
        files = cls(library, root, writable=True)
        tree = files.tree
        try:
            root.mkdir(parents=True, exist_ok=True)
            for folder in tree.folders():
                make_folder_beneath(root, folder)
        except OSError as exc:
            raise DiskError(exc.errno, f"cannot create the folder {exc.filename or root}: {_why(exc)}",
                            root) from exc
        wrong = []
        lacking = 0
        for index in selected:
            path = root / tree.paths[index]
            try:
                info = path.lstat()
                held = info.st_size if stat.S_ISREG(info.st_mode) else -1
            except FileNotFoundError:
                held = -1  # to be created, even empty
            except OSError as exc:
                raise DiskError(exc.errno, f"cannot read {path}: {exc.strerror}", root) from exc
            if held != tree.sizes[index]:
                wrong.append(index)
                lacking += max(0, tree.sizes[index] - max(0, held))
        free = free_bytes(root)
        if lacking > free:
            raise DiskError(errno.ENOSPC, f"cannot reserve {lacking} bytes under {root}: disk full "
                                          f"({free} bytes free)", root)
        for index in wrong:
            files._size(index)
        return files

    def _size(self, index: int) -> None:
        """Create the file if need be, and give it its size (sparse)."""
        path = self.path / self.tree.paths[index]
        size = self.tree.sizes[index]
        try:
            fd = open_beneath(self.path, self.tree.paths[index], os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise DiskError(exc.errno, f"cannot open {path}: {_why(exc)}", path) from exc
        try:
            os.ftruncate(fd, size)
        except OSError as exc:
            reason = "disk full" if exc.errno == errno.ENOSPC else exc.strerror
            raise DiskError(exc.errno, f"cannot give {path} its {size} bytes: {reason}", path) from exc
        finally:
            os.close(fd)

    def _fd(self, index: int) -> int:
        fd = self.open_fds.get(index)
        if fd is not None:
            self.open_fds.move_to_end(index)
            return fd
        path = self.path / self.tree.paths[index]
        relative = self.tree.paths[index]
        flags = os.O_RDWR if self.writable else os.O_RDONLY
        try:
            try:
                fd = open_beneath(self.path, relative, flags)
            except FileNotFoundError:
                if not self.writable:
                    raise
                fd = open_beneath(self.path, relative, flags | os.O_CREAT, make_folders=True)  # removed meanwhile
        except OSError as exc:
            raise DiskError(exc.errno, f"cannot open {path}: {_why(exc)}", path) from exc
        self.open_fds[index] = fd
        while len(self.open_fds) > self.limit:
            old, old_fd = self.open_fds.popitem(last=False)
            if old in self.written:
                self.written.discard(old)
                self.retired.append(old_fd)
            else:
                os.close(old_fd)
        return fd

    # -- books ---------------------------------------------------------------------------------
    def write(self, book: int, payload: memoryview | bytes) -> None:
        """pwrite a verified book at its place in its file; DiskError if it cannot be."""
        index = self.tree.file_of(book)
        offset, _ = self.tree.book_span(book)
        write_book(self._fd(index), offset, payload)
        self.written.add(index)

    def read(self, book: int, length: int) -> bytes | None:
        """The bytes of ``book`` (None if its file cannot be read or is short)."""
        if not 0 <= book < self.library.books:
            return None
        offset, expected = self.tree.book_span(book)
        if expected != length:
            return None
        try:
            data = os.pread(self._fd(self.tree.file_of(book)), length, offset)
        except OSError:
            return None
        return data if len(data) == length else None

    # -- durability ----------------------------------------------------------------------------
    def sync_fds(self) -> list[int]:
        """Descriptors of every file written since the last call, for the Syncer, which closes them."""
        fds = [os.dup(self.open_fds[index]) for index in self.written] + self.retired
        self.written, self.retired = set(), []
        return fds

    def sync(self) -> None:
        """Make every book written so far durable (blocking)."""
        failed: OSError | None = None
        for fd in self.sync_fds():
            try:
                os.fdatasync(fd)
            except OSError as exc:
                failed = failed or exc
            finally:
                os.close(fd)
        if failed is not None:
            raise DiskError(failed.errno, f"cannot sync a file under {self.path}: {failed.strerror}", self.path)

    def finish(self) -> Path:
        """Every selected book is in: sync; the tree is already where it belongs."""
        self.sync()
        return self.path

    def close(self) -> None:
        for fd in [*self.open_fds.values(), *self.retired]:
            try:
                os.close(fd)
            except OSError:
                pass
        self.open_fds.clear()
        self.retired = []
        self.written = set()


def _why(exc: OSError) -> str:
    return "a link is in the way; move it" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else str(exc.strerror)
