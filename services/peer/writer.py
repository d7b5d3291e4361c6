"""Verify a received book and write it: the one place a book reaches the disk.

``land`` hashes the payload against the library and ``pwrite``s it only when
it matches, returning what happened as a ``Written`` value for the Requestor
to act on (count it, strike the sender, or stop on a disk error).

It runs inline in the Requestor's loop. A version on two worker threads was
measured slower on 2 cores (the loop then fought the workers for the GIL and
the memory held by books waiting to be written grew), see the closing note
of the player issue.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.peer.library import Library
from services.peer.partfile import DiskError


class BookSink(Protocol):
    """Where verified books go: a download's partial file (partfile.py) or its tree (treefiles.py)."""

    def write(self, book: int, payload: memoryview | bytes) -> None:
        """pwrite ``payload`` at the place of ``book``; DiskError if it cannot be."""


class Outcome(enum.Enum):
    WRITTEN = "written"
    BAD_HASH = "bad hash"
    DISK_ERROR = "disk error"


@dataclass(frozen=True)
class Written:
    library_id: bytes
    book: int
    peer: str
    length: int
    outcome: Outcome
    error: str = ""
    errno: int = 0  # of a DISK_ERROR: tells a full disk (wait, try again) from one that needs the user
    write_seconds: float = field(default=0.0, compare=False)  # how long the pwrite took (a WRITTEN book)


def land(library: Library, book: int, peer: str, payload: Any, sink: BookSink) -> Written:
    """Verify ``payload`` (anything memoryview() accepts) as ``book`` and write it into ``sink``."""
    view = memoryview(payload)
    try:
        if not library.verify_book(book, view):
            return Written(library.id, book, peer, len(view), Outcome.BAD_HASH)
        started = time.perf_counter()
        sink.write(book, view)
        return Written(library.id, book, peer, len(view), Outcome.WRITTEN,
                       write_seconds=time.perf_counter() - started)
    except DiskError as exc:
        return Written(library.id, book, peer, len(view), Outcome.DISK_ERROR, str(exc), exc.errno or 0)
    finally:
        view.release()
