"""The librarifier: turn a stuff (a file or a folder) into a library, and verify a file.

``librarify`` hashes every book of a file (see hashing.py) and builds a version 1 library;
``librarify_tree`` walks a folder (``walk``) and builds a version 2 library of its files
(hashing.py's ``hash_files``); ``verify`` re-hashes a file and says which books match.

Walking a folder keeps regular files and empty folders. Symbolic links are never followed
(a link could point anywhere, or into a loop), and sockets, FIFOs and devices hold no stuff:
each is skipped with a warning naming it, given to ``warn``.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.peer.hashing import Progress, hash_files, iter_book_hashes
from services.peer.library import (
    MAX_BOOKS,
    FileEntry,
    HashAlgorithm,
    Library,
    LibraryError,
    auto_book_size,
    book_count,
    check_book_size,
    check_books,
    check_name,
    make_library,
)
from services.peer.localdata import good_books
from services.peer.signing import Publisher
from services.peer.tree import MAX_FILES, check_path
from services.runtime.version import version

CREATOR = f"emma {version()}"


def stuff_size(path: Path) -> int:
    """Size of a shareable regular file, or LibraryError saying why not."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise LibraryError(f"no such file: {path}") from exc
    except OSError as exc:
        raise LibraryError(f"cannot read {path}: {exc.strerror}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise LibraryError(f"{path} is a directory; give a single file (`emma share` takes either)")
    if not stat.S_ISREG(info.st_mode):
        raise LibraryError(f"{path} is not a regular file")
    return info.st_size


def librarify(
    path: Path,
    *,
    hubs: tuple[str, ...],
    book_size: int | None = None,
    algorithm: HashAlgorithm = HashAlgorithm.BLAKE3,
    progress: Progress | None = None,
    now: float | None = None,
    hub_keys: tuple[str, ...] = (),
    publisher: Publisher | None = None,
) -> Library:
    """Hash ``path`` into a library listing ``hubs`` (with their CURVE keys), signed by ``publisher`` if given."""
    size = stuff_size(path)
    before = _stamp(path)
    chosen = check_book_size(book_size) if book_size is not None else auto_book_size(size)
    try:
        name = check_name(path.name)
    except LibraryError as exc:
        raise LibraryError(f"{exc}; rename the file (or link it under a plain name) and share that") from exc
    check_books(size, chosen)  # before hours of hashing, not after
    try:
        hashes = b"".join(iter_book_hashes(path, size, chosen, algorithm, progress))
    except PermissionError as exc:
        raise LibraryError(f"cannot read {path}: permission denied") from exc
    except (OSError, ValueError) as exc:
        raise LibraryError(f"cannot read {path}: {exc}") from exc
    _unchanged(path, before)
    return make_library(
        name=name,
        size=size,
        book_size=chosen,
        hash_algorithm=algorithm,
        book_hashes=hashes,
        hubs=hubs,
        created_at=int(time.time() if now is None else now),
        creator=CREATOR,
        hub_keys=hub_keys,
        publisher=publisher,
    )


@dataclass
class Walked:
    """A folder's shareable content: files (relative path, size) and empty folders, both sorted."""

    files: list[tuple[str, int]] = field(default_factory=list)
    empty_dirs: list[str] = field(default_factory=list)
    skipped: int = 0
    stamps: dict[str, tuple[int, int]] = field(default_factory=dict)  # each file's size and mtime when walked

    @property
    def size(self) -> int:
        return sum(size for _, size in self.files)


Warn = Callable[[str], None]


def walk(root: Path, warn: Warn) -> Walked:
    """Regular files and empty folders under ``root``, never following a link; others skipped with a warning.

    Every path is checked as a library would check it (tree.check_path): one that breaks a
    rule is a LibraryError naming it, before any hashing.
    """
    walked = Walked()
    pending = [("", root)]
    while pending:
        rel, folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise LibraryError(f"cannot read the folder {folder}: {exc.strerror}") from exc
        kept = 0
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_symlink():
                    walked.skipped += 1
                    warn(f"skipped {entry.path}: a symbolic link (links are not followed; share what it points to)")
                    continue
                if entry.is_dir(follow_symlinks=False):
                    _checked(path, entry.path)
                    pending.append((path, Path(entry.path)))
                    kept += 1
                    continue
                if entry.is_file(follow_symlinks=False):
                    _checked(path, entry.path)
                    info = entry.stat(follow_symlinks=False)
                    walked.files.append((path, info.st_size))
                    walked.stamps[path] = (info.st_size, info.st_mtime_ns)
                    kept += 1
                    continue
            except OSError as exc:
                raise LibraryError(f"cannot read {entry.path}: {exc.strerror}") from exc
            walked.skipped += 1
            warn(f"skipped {entry.path}: not a regular file (a socket, FIFO or device)")
        if not kept and rel:
            walked.empty_dirs.append(rel)
    walked.files.sort()
    walked.empty_dirs.sort()
    if len(walked.files) > MAX_FILES or len(walked.empty_dirs) > MAX_FILES:
        raise LibraryError(f"{root} holds {len(walked.files)} files and {len(walked.empty_dirs)} empty folders; "
                           f"a library holds at most {MAX_FILES} of each: share its subfolders one by one")
    return walked


def _stamp(path: Path) -> tuple[int, int] | None:
    """What says a file changed: its size and modification time (None when it cannot be read any more)."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _unchanged(path: Path, before: tuple[int, int] | None) -> None:
    """LibraryError when ``path`` changed since ``before`` (taken before hashing it): its books would not match
    what a seed serves, and every player downloading it would throw them away."""
    if before is None or _stamp(path) != before:
        raise LibraryError(f"{path} changed while it was being hashed; share it again once nothing writes to it")


def _checked(path: str, where: str) -> None:
    try:
        check_path(path)
    except LibraryError as exc:
        raise LibraryError(f"{exc}: rename {where!r} (or leave it out) and share again") from exc


def tree_book_size(walked: Walked, book_size: int | None) -> int:
    """The book size asked for, or the automatic one grown until the tree fits MAX_BOOKS."""
    chosen = check_book_size(book_size) if book_size is not None else auto_book_size(walked.size)
    while True:
        books = sum(book_count(size, chosen) for _, size in walked.files)
        if books <= MAX_BOOKS:
            return chosen
        if book_size is not None or chosen >= AUTO_TREE_MAX_BOOK:
            raise LibraryError(f"the tree makes {books} books of {chosen} bytes; a library holds at most "
                               f"{MAX_BOOKS}: use larger books (--book-size) or share its subfolders one by one")
        chosen *= 2


AUTO_TREE_MAX_BOOK = 64 * 1024 * 1024


def librarify_tree(
    path: Path,
    *,
    hubs: tuple[str, ...],
    book_size: int | None = None,
    algorithm: HashAlgorithm = HashAlgorithm.BLAKE3,
    progress: Progress | None = None,
    now: float | None = None,
    warn: Warn = lambda _: None,
    walked: Walked | None = None,
    hub_keys: tuple[str, ...] = (),
    publisher: Publisher | None = None,
) -> Library:
    """Hash every file under the folder ``path`` into a version 2 library listing ``hubs`` (with their CURVE
    keys), signed by ``publisher`` if given."""
    try:
        name = check_name(path.name)
    except LibraryError as exc:
        raise LibraryError(f"{exc}; rename the folder (or link it under a plain name) and share that") from exc
    walked = walked if walked is not None else walk(path, warn)
    chosen = tree_book_size(walked, book_size)
    entries: list[FileEntry] = []
    hashes: list[bytes] = []
    first = 0
    try:
        for (rel, size), (books, root) in zip(
                walked.files, hash_files(path, walked.files, chosen, algorithm, progress), strict=True):
            entries.append(FileEntry(rel, size, root, first))
            hashes.append(books)
            first += book_count(size, chosen)
    except PermissionError as exc:
        raise LibraryError(f"cannot read {exc.filename}: permission denied") from exc
    except (OSError, ValueError) as exc:
        raise LibraryError(f"cannot read a file under {path}: {exc}") from exc
    for rel, _ in walked.files:
        _unchanged(path / rel, walked.stamps.get(rel))
    return make_library(
        name=name,
        size=walked.size,
        book_size=chosen,
        hash_algorithm=algorithm,
        book_hashes=b"".join(hashes),
        hubs=hubs,
        created_at=int(time.time() if now is None else now),
        creator=CREATOR,
        files=entries,
        empty_dirs=walked.empty_dirs,
        hub_keys=hub_keys,
        publisher=publisher,
    )


@dataclass(frozen=True)
class VerifyResult:
    good: list[int]
    bad: list[int]
    size_matches: bool

    @property
    def ok(self) -> bool:
        return self.size_matches and not self.bad


def verify_tree(library: Library, root: Path, progress: Progress | None = None) -> VerifyResult:
    """Re-hash every file of a tree library under the folder ``root``, book by book.

    A missing or short file marks its books bad; ``size_matches`` says whether every file
    is there with exactly its size.
    """
    tree = library.tree
    if tree is None:
        raise LibraryError("not a library of a folder; give the file it describes")
    if not root.is_dir():
        raise LibraryError(f"{root} is not a folder; the library describes the folder {library.name!r}")
    good: list[int] = []
    sizes_match = True
    for index in range(len(tree)):
        path = root / tree.paths[index]
        try:
            good += good_books(library, index, path)
            sizes_match &= path.is_file() and not path.is_symlink() and path.stat().st_size == tree.sizes[index]
        except OSError as exc:
            raise LibraryError(f"cannot read {path}: {exc.strerror}") from exc
        if progress is not None:
            progress(tree.sizes[index])
    held = set(good)
    return VerifyResult(good=good, bad=[b for b in range(library.books) if b not in held], size_matches=sizes_match)


def verify(library: Library, path: Path, progress: Progress | None = None) -> VerifyResult:
    """Re-hash ``path`` and compare each book with the library (of a folder's library: ``verify_tree``).

    A file shorter than the library marks the books it lacks as bad; a longer
    file fails ``size_matches``.
    """
    if library.tree is not None:
        return verify_tree(library, path, progress)
    size = stuff_size(path)
    readable = min(size, library.size)
    good: list[int] = []
    bad: list[int] = []
    try:
        for index, digest in enumerate(
            iter_book_hashes(path, readable, library.book_size, library.hash_algorithm, progress)
        ):
            complete = library.book_span(index)[1] == min(library.book_size, readable - index * library.book_size)
            (good if complete and digest == library.book_hash(index) else bad).append(index)
    except (OSError, ValueError) as exc:  # ValueError: the file shrank after its stat
        raise LibraryError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    checked = len(good) + len(bad)
    bad.extend(range(checked, library.books))
    return VerifyResult(good=good, bad=bad, size_matches=size == library.size)
