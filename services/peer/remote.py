"""One remote player as the Requestor's logic sees it: a plain record keyed by endpoint.

A Remote is shared by every library the remote serves. Per library it holds
the remote's bitfield (None while the handshake is unanswered); the credit
window is per remote. No socket lives here: the Requestor's loop keeps one
DEALER per endpoint and carries out what the logic decides.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

from services.peer.bitfield import Bitfield, bit
from services.peer.pace import Pace
from services.peer.window import Window

HANDSHAKE_TIMEOUT = 5.0
FIRST_CONTACT = 1.5  # a remote that has never said a word by then is taken for dead (no connection, a fake seed)


@dataclass
class Remote:
    endpoint: str
    window: Window = field(default_factory=Window)
    books: dict[bytes, Bitfield | None] = field(default_factory=dict)
    handshake_at: dict[bytes, float] = field(default_factory=dict)
    last_heard: float = 0.0
    heard: bool = False  # it has answered anything at all since it was connected
    not_before: float = 0.0
    attempts: int = 0
    refused: dict[tuple[bytes, int], float] = field(default_factory=dict)
    paces: dict[bytes, Pace] = field(default_factory=dict)  # per library: how fast the remote gains books

    def refuse(self, key: tuple[bytes, int], until: float) -> None:
        """The remote answered busy for this book: ask it for other books until ``until``."""
        self.refused[key] = until

    def offer(self, library_id: bytes, books: Bitfield, now: float) -> Container[int]:
        """The books of ``library_id`` worth asking this remote for now."""
        if not self.refused:
            return books
        for key, until in list(self.refused.items()):
            if until <= now:
                del self.refused[key]
        skip = {book for (lib, book) in self.refused if lib == library_id}
        return _Without(books, skip) if skip else books

    def handshaking(self, library_id: bytes, now: float) -> None:
        """A handshake for ``library_id`` goes out now."""
        self.books.setdefault(library_id, None)
        self.handshake_at[library_id] = now

    def forget(self, library_id: bytes) -> Bitfield | None:
        """Stop tracking ``library_id`` here; the books the remote was known to hold."""
        self.handshake_at.pop(library_id, None)
        self.paces.pop(library_id, None)
        return self.books.pop(library_id, None)

    def answered(self, library_id: bytes) -> bool:
        """Whether the remote answered the handshake for ``library_id`` with its bitfield."""
        return self.books.get(library_id) is not None

    def never_answered(self, now: float) -> bool:
        """Connected and asked FIRST_CONTACT ago, and silent since: nothing listens there, or nothing honest."""
        return not self.heard and bool(self.handshake_at) and now - min(self.handshake_at.values()) > FIRST_CONTACT

    def stale_handshakes(self, now: float) -> list[bytes]:
        return [lib for lib, at in self.handshake_at.items()
                if self.books.get(lib) is None and now - at > HANDSHAKE_TIMEOUT]

    def in_flight(self, library_id: bytes) -> list[int]:
        """Books of ``library_id`` requested from this remote and not arrived yet."""
        return [book for (lib, book) in self.window.sent if lib == library_id]


class _Without:
    """A bitfield minus a few books (a Container for the picker)."""

    def __init__(self, books: Bitfield, skip: set[int]) -> None:
        self.books, self.skip = books, skip
        self.size = books.size
        self.mask = books.mask
        for book in skip:
            if 0 <= book < books.size:
                self.mask &= ~bit(books.size, book)

    def __contains__(self, book: object) -> bool:
        return book not in self.skip and book in self.books
