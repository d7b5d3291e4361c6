"""The librarifier: turn a stuff (a file) into a library, and verify a file.

``librarify`` hashes every book (see hashing.py) and builds the library;
``verify`` re-hashes a file and says which books match.
"""

from __future__ import annotations

import stat
import time
from dataclasses import dataclass
from pathlib import Path

from services.peer.hashing import Progress, iter_book_hashes
from services.peer.library import (
    HashAlgorithm,
    Library,
    LibraryError,
    auto_book_size,
    check_book_size,
    check_books,
    check_name,
    make_library,
)
from services.peer.signing import Publisher
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
        raise LibraryError(f"{path} is a directory; share a single file")
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


@dataclass(frozen=True)
class VerifyResult:
    good: list[int]
    bad: list[int]
    size_matches: bool

    @property
    def ok(self) -> bool:
        return self.size_matches and not self.bad


def verify(library: Library, path: Path, progress: Progress | None = None) -> VerifyResult:
    """Re-hash ``path`` and compare each book with the library.

    A file shorter than the library marks the books it lacks as bad; a longer
    file fails ``size_matches``.
    """
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
