"""Never fetch twice: books a player can already read are found before any is requested.

When a tree download opens, each selected file not yet worked on is checked (in a worker
thread: hashing takes time the Requestor's loop does not have):

1. Data at the file's target path is read book by book and every book that matches the
   library is kept (transmission's "verify local data"): a library removed and added
   again, or a folder put in place by hand, costs a read, not a download.
2. A file still missing books whose BLAKE3 root is that of a complete file of another
   library this player holds is copied from there (a reflink where the file system offers
   one: no bytes are copied at all), then checked book by book like any other data.

The result is the books found good; the Requestor records them as held before it asks
anyone for anything. Nothing here trusts a root: a copy whose books do not match is
simply fetched.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from services.peer.library import Library
from services.peer.partfile import DiskError
from services.peer.treefiles import linked_folder

FICLONE = 0x40049409  # ioctl: make the target share the source's blocks (btrfs, xfs, bcachefs)
_NO_REFLINK = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.EPERM}


@dataclass(frozen=True)
class CheckJob:
    library: Library
    root: Path  # where the tree goes
    files: Sequence[int]  # indices of the files to check
    sources: dict[bytes, Path]  # BLAKE3 root -> a complete file with that root elsewhere on this player


@dataclass
class CheckResult:
    library_id: bytes
    files: Sequence[int]
    good: list[int] = field(default_factory=list)  # books found good
    kept: int = 0  # files of which some books were in place already
    copied: int = 0  # files copied from another library
    errors: list[str] = field(default_factory=list)  # what could not be read or copied (those books are fetched)
    disk_error: DiskError | None = None  # the tree's files could not be made (storage.prepare)


def check(job: CheckJob) -> CheckResult:
    """Check (and, from other libraries, copy) the job's files; never raises for one file's trouble."""
    result = CheckResult(job.library.id, job.files)
    tree = job.library.tree
    if tree is None:
        return result
    for index in job.files:
        books = tree.books_of(index)
        target = job.root / tree.paths[index]
        if linked_folder(job.root, tree.paths[index]):  # never read, nor copied, through it
            result.errors.append(f"{target}: a link is in the way; move it")
            continue
        try:
            good = good_books(job.library, index, target)
            if good:
                result.kept += 1
            source = job.sources.get(tree.root(index))
            if len(good) < len(books) and source is not None and source != target:
                copy_file(source, target)
                result.copied += 1
                good = good_books(job.library, index, target)
        except OSError as exc:
            result.errors.append(f"{target}: {exc.strerror or exc}")
            continue
        result.good.extend(good)
    return result


def good_books(library: Library, index: int, path: Path) -> list[int]:
    """The books of file ``index`` that ``path`` holds, right length and right hash ([] if no such file)."""
    tree = library.tree
    if tree is None:
        return []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return []
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR):
            return []  # a link or a folder in the way: fetched, and TreeFiles says what is wrong
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        good = []
        buf = bytearray(library.book_size)
        for book in tree.books_of(index):
            offset, length = tree.book_span(book)
            view = memoryview(buf)[:length]
            got = os.preadv(fd, [view], offset)
            if got == length and library.verify_book(book, view):
                good.append(book)
        return good
    finally:
        os.close(fd)


def copy_file(source: Path, target: Path) -> None:
    """Copy ``source`` over ``target`` (a reflink if possible), durably, never leaving half a file there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".emma-copy-{os.getpid()}")
    with open(source, "rb") as reader, open(temporary, "wb") as writer:
        try:
            if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
                raise OSError(errno.EINVAL, f"{source} is not a regular file")
            _clone(reader, writer)
            writer.flush()
            os.fdatasync(writer.fileno())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    os.replace(temporary, target)


def _clone(reader: BinaryIO, writer: BinaryIO) -> None:
    src, dst = reader.fileno(), writer.fileno()
    try:
        fcntl.ioctl(dst, FICLONE, src)
        return
    except OSError as exc:
        if exc.errno not in _NO_REFLINK:
            raise
    size = os.fstat(src).st_size
    copied = 0
    try:
        while copied < size:
            n = os.copy_file_range(src, dst, size - copied)
            if n == 0:
                break
            copied += n
    except OSError as exc:
        if exc.errno not in (*_NO_REFLINK, errno.ENOSYS):
            raise
        os.lseek(src, copied, os.SEEK_SET)
        os.lseek(dst, copied, os.SEEK_SET)
        shutil.copyfileobj(reader, writer, 1024 * 1024)
