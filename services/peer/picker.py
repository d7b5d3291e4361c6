"""The book picker: which book to ask which peer for next. Pure state, no I/O.

How it works. The picker tracks, for one library:

- ``have``: books written locally;
- ``availability[i]``: how many known peers hold book i (from bitfields and
  ``have`` messages, and removed when a peer goes away);
- ``in_flight[i]``: the peers book i is currently requested from;
- ``wanted``: of a selective download, the books to fetch (the others are never
  picked, and the picker is complete without them); None: every book.

``pick(peer, peer_books, n)`` returns up to n books the peer holds that we
lack and have not requested yet: the first few books are random (to get
something to trade quickly), then rarest first, random among equals. When
every missing book is already in flight, the picker enters *endgame*: it
returns books in flight elsewhere (duplicates) so the last books are not held
up by one slow peer; ``received`` then names the peers whose duplicate
requests should be cancelled.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Container, Hashable, Iterable

from services.peer.bitfield import Bitfield

Peer = Hashable
RANDOM_FIRST = 4
FEW_BOOKS = 8  # a peer holding under 1/FEW_BOOKS of our missing books: pick among its books, not ours


class Picker:
    """Piece-picking state for one library."""

    def __init__(self, have: Bitfield, rng: random.Random | None = None, wanted: Container[int] | None = None
                 ) -> None:
        self.have = have
        self.size = have.size
        self.availability = [0] * self.size
        self.in_flight: dict[int, set[Peer]] = {}
        self.rng = rng or random.Random()
        self._missing = {b for b in have.missing() if wanted is None or b in wanted}
        ranks = list(range(self.size))
        self.rng.shuffle(ranks)
        self._rank = ranks  # random tie-break among equally rare books
        # each book's place in the rarest-first order as one int, availability * size + rank, kept up to date
        # with the availability: the order sorts by a list lookup, not a tuple built per book
        self._key = list(ranks)
        self._order: list[int] | None = None  # cached pick order; None = rebuild
        self._start = 0

    # -- availability -------------------------------------------------
    def peer_has(self, books: Iterable[int]) -> None:
        """A peer announced it holds ``books`` (a bitfield's indices or a have)."""
        availability, key, size = self.availability, self._key, self.size
        for book in books:
            if 0 <= book < size:
                availability[book] += 1
                key[book] += size
                self._order = None

    def peer_gone(self, peer: Peer, books: Iterable[int]) -> list[int]:
        """Forget a peer: its availability and its requests. Returns books it had in flight."""
        for book in books:
            if 0 <= book < self.size and self.availability[book] > 0:
                self.availability[book] -= 1
                self._key[book] -= self.size
                self._order = None
        returned = []
        for book, peers in list(self.in_flight.items()):
            if peer in peers:
                self.release(book, peer)
                returned.append(book)
        return returned

    # -- picking --------------------------------------------------------
    @property
    def missing(self) -> int:
        return len(self._missing)

    @property
    def complete(self) -> bool:
        return not self._missing

    @property
    def endgame(self) -> bool:
        # in_flight only ever holds missing books, so "every missing book is in flight" is a count
        return bool(self._missing) and len(self.in_flight) == len(self._missing)

    def pick(self, peer: Peer, peer_books: Container[int], n: int) -> list[int]:
        """Up to ``n`` books to request from ``peer``, marking them in flight."""
        if n <= 0 or not self._missing:
            return []
        if len(self.have) < RANDOM_FIRST:
            fresh = [b for b in self._missing if b not in self.in_flight and b in peer_books]
            self.rng.shuffle(fresh)
            chosen = fresh[:n]
        else:
            chosen = self._rarest(peer_books, n)
        if not chosen:
            chosen = self._endgame_choices(peer, peer_books, n)
        for book in chosen:
            self.in_flight.setdefault(book, set()).add(peer)
        return chosen

    def _rarest(self, peer_books: Container[int], n: int) -> list[int]:
        """Walk the missing books in (availability, random rank) order.

        The order is rebuilt only after availability changed; books received
        since are dropped from its front, books in flight skipped. A peer that
        holds few books (most peers, early in a swarm) is looked at the other
        way round: its books that we want, sorted by the same key, which
        chooses the same books without a walk over every missing one.
        """
        if isinstance(peer_books, Bitfield) and len(peer_books) * FEW_BOOKS < len(self._missing):
            missing, in_flight = self._missing, self.in_flight
            wanted = [b for b in peer_books.indices() if b in missing and b not in in_flight]
            wanted.sort(key=self._key.__getitem__)
            return wanted[:n]
        if self._order is None:
            self._order = sorted(self._missing, key=self._key.__getitem__)  # (availability, rank)
            self._start = 0
        order, start = self._order, self._start
        while start < len(order) and order[start] not in self._missing:
            start += 1
        self._start = start
        chosen: list[int] = []
        for book in itertools.islice(order, start, None):
            if book in self._missing and book not in self.in_flight and book in peer_books:
                chosen.append(book)
                if len(chosen) == n:
                    break
        return chosen

    def _endgame_choices(self, peer: Peer, peer_books: Container[int], n: int) -> list[int]:
        if not self.endgame:
            return []
        candidates = [
            b for b in self._missing if b in peer_books and peer not in self.in_flight.get(b, ())
        ]
        self.rng.shuffle(candidates)
        return sorted(candidates, key=lambda b: len(self.in_flight.get(b, ())))[:n]

    # -- outcomes ---------------------------------------------------------
    def release(self, book: int, peer: Peer) -> None:
        """A request to ``peer`` ended without the book (timeout, busy, error, cancel)."""
        peers = self.in_flight.get(book)
        if peers is not None:
            peers.discard(peer)
            if not peers:
                del self.in_flight[book]

    def received(self, book: int, peer: Peer) -> list[Peer]:
        """``book`` arrived from ``peer`` and was verified and written.

        Returns the other peers it was still requested from (to cancel).
        """
        others = [p for p in self.in_flight.pop(book, set()) if p != peer]
        self.have.add(book)
        self._missing.discard(book)
        return others

    def unavailable(self) -> int:
        """Missing books that no known peer holds (no source to ask)."""
        return sum(1 for b in self._missing if self.availability[b] == 0)

    def wanted_from(self, peer_books: Container[int]) -> bool:
        """Whether a peer holding ``peer_books`` has anything we lack."""
        return any(b in peer_books for b in self._missing)
