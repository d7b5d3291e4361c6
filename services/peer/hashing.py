"""Hashing books of a file on every core, with bounded memory.

Two worker threads (one per core) each own one book-sized buffer: they
``preadv`` a book into it and hash it. Both calls release the GIL, so the
threads run in parallel; memory is ``workers x book_size`` whatever the file
size. Used by the librarifier (make the hashes) and by ``verify``.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
        got = 0
        while got < length:
            n = os.preadv(fd, [view[got:]], offset + got)
            if n == 0:
                raise ValueError(f"{path} is shorter than {size} bytes (ends inside book {index})")
            got += n
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
