"""One remote player seen by the Requestor: a DEALER socket and what we know.

A Remote is connected once per endpoint and shared by every library the
remote serves. Per library it holds the remote's bitfield (None until the
handshake is answered); the credit window is per remote.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

import zmq

from services.peer.bitfield import Bitfield
from services.peer.window import Window
from services.wire import framing

HANDSHAKE_TIMEOUT = 5.0


@dataclass
class Remote:
    endpoint: str
    socket: zmq.Socket[Any]
    window: Window = field(default_factory=Window)
    books: dict[bytes, Bitfield | None] = field(default_factory=dict)
    handshake_at: dict[bytes, float] = field(default_factory=dict)
    last_heard: float = 0.0
    not_before: float = 0.0
    attempts: int = 0
    refused: dict[tuple[bytes, int], float] = field(default_factory=dict)

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


    @classmethod
    def connect(cls, ctx: zmq.Context[Any], endpoint: str, now: float) -> Remote:
        socket = ctx.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, framing.MAX_BOOK_FRAME)
        socket.setsockopt(zmq.RCVHWM, 0)
        socket.connect(endpoint)
        return cls(endpoint=endpoint, socket=socket, last_heard=now)

    def handshake(self, library_id: bytes, player_id: bytes, now: float) -> None:
        self.books.setdefault(library_id, None)
        self.handshake_at[library_id] = now
        self.send(framing.handshake(library_id, player_id))

    def send(self, frame: bytes) -> None:
        try:
            self.socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            pass  # not connected yet: the handshake timeout notices

    def stale_handshakes(self, now: float) -> list[bytes]:
        return [lib for lib, at in self.handshake_at.items()
                if self.books.get(lib) is None and now - at > HANDSHAKE_TIMEOUT]

    def close(self) -> None:
        self.socket.close(linger=0)


class _Without:
    """A bitfield minus a few books (a Container for the picker)."""

    def __init__(self, books: Bitfield, skip: set[int]) -> None:
        self.books, self.skip = books, skip

    def __contains__(self, book: object) -> bool:
        return book not in self.skip and book in self.books
