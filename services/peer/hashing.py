"""Hashing books of a file, or the files of a tree, on every core, with bounded memory.

Two worker threads (one per core) each own one book-sized buffer: they
``preadv`` a book into it and hash it. Both calls release the GIL, so the
threads run in parallel; memory is ``workers x book_size`` whatever the file
size. Used by the librarifier (make the hashes) and by ``verify``.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3

from services.peer.library import HashAlgorithm, book_count, book_span, hash_bytes

Progress = Callable[[int], None]


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def iter_book_hashes(
    path: Path, size: int, book_size: int, algorithm: HashAlgorithm, progress: Progress | None = None
) -> Iterator[bytes]:
    """Yield the hash of each book of ``path`` in order, reading ``size`` bytes.

    Raises OSError when the file cannot be read and ValueError when it is
    shorter than ``size``.
    """
    count = book_count(size, book_size)
    workers = _workers()
    local = threading.local()
    fd = os.open(path, os.O_RDONLY)

    def hash_book(index: int) -> bytes:
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = bytearray(book_size)
        offset, length = book_span(index, size, book_size)
        view = memoryview(buf)[:length]
        _read_exactly(fd, view, offset, f"{path} is shorter than {size} bytes (ends inside book {index})")
        return hash_bytes(algorithm, view)

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
            window = workers * 2
            pending = deque(pool.submit(hash_book, i) for i in range(min(window, count)))
            submitted = len(pending)
            for index in range(count):
                digest = pending.popleft().result()
                if submitted < count:
                    pending.append(pool.submit(hash_book, submitted))
                    submitted += 1
                if progress is not None:
                    progress(book_span(index, size, book_size)[1])
                yield digest
    finally:
        os.close(fd)


BATCH_BYTES = 8 * 1024 * 1024  # files hashed by one task: this many bytes (or BATCH_FILES files) ...
BATCH_FILES = 256  # ... so ten thousand small files are not ten thousand tasks


def hash_file(path: str, size: int, book_size: int, algorithm: HashAlgorithm, buf: bytearray) -> tuple[bytes, bytes]:
    """(book hashes, BLAKE3 root) of the file at ``path``, which must hold exactly ``size`` bytes.

    Books are read one at a time into ``buf``. The root of a file of one BLAKE3 book is that
    book's hash (the same function over the same bytes), so small files are hashed once.
    Raises OSError, and ValueError when the file is not ``size`` bytes long (it changed).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        count = book_count(size, book_size)
        once = count <= 1 and algorithm is HashAlgorithm.BLAKE3
        root = None if once else blake3.blake3()
        digests = []
        for index in range(count):
            offset, length = book_span(index, size, book_size)
            view = memoryview(buf)[:length]
            _read_exactly(fd, view, offset, f"{path} is shorter than {size} bytes: it changed while being shared")
            digests.append(hash_bytes(algorithm, view))
            if root is not None:
                root.update(view)
        if os.fstat(fd).st_size != size:
            raise ValueError(f"{path} is no longer {size} bytes long: it changed while being shared")
    finally:
        os.close(fd)
    if root is None:
        return b"".join(digests), digests[0] if digests else blake3.blake3().digest()
    return b"".join(digests), root.digest()


def _batches(files: Sequence[tuple[str, int]]) -> Iterator[range]:
    start, total = 0, 0
    for index, (_, size) in enumerate(files):
        total += size
        if total >= BATCH_BYTES or index + 1 - start >= BATCH_FILES:
            yield range(start, index + 1)
            start, total = index + 1, 0
    if start < len(files):
        yield range(start, len(files))


def hash_files(root: Path, files: Sequence[tuple[str, int]], book_size: int, algorithm: HashAlgorithm,
               progress: Progress | None = None) -> Iterator[tuple[bytes, bytes]]:
    """Yield (book hashes, BLAKE3 root) of each file (its path under ``root``, its size), in order.

    Batches of files are hashed on every core (one book-sized buffer per worker thread);
    memory is ``workers x book_size`` plus the hashes, whatever the tree.
    """
    workers = _workers()
    local = threading.local()

    def hash_batch(batch: range) -> list[tuple[bytes, bytes]]:
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = bytearray(book_size)
        return [hash_file(os.path.join(root, files[i][0]), files[i][1], book_size, algorithm, buf) for i in batch]

    batches = _batches(files)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
        pending = deque((batch, pool.submit(hash_batch, batch)) for batch in itertools.islice(batches, workers * 2))
        while pending:
            batch, future = pending.popleft()
            results = future.result()
            following = next(batches, None)
            if following is not None:
                pending.append((following, pool.submit(hash_batch, following)))
            for index, result in zip(batch, results, strict=True):
                if progress is not None:
                    progress(files[index][1])
                yield result


def _read_exactly(fd: int, view: memoryview, offset: int, short: str) -> None:
    """Fill ``view`` from ``fd`` at ``offset``; a file that ends first raises ValueError(``short``)."""
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            raise ValueError(short)
        got += n
