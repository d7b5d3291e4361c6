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

import random
from collections.abc import Container, Hashable, Iterable

from services.peer.bitfield import Bitfield, bit, books_of, mask_of

Peer = Hashable
RANDOM_FIRST = 4
FEW = 32  # candidates of one availability up to this many are sorted by rank; more, and the rank order is walked
RELEVEL = 64  # availability changes of more books than this at once (a bitfield) rebuild every level


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
        self._askable = mask_of(self.size, self._missing)  # the books that may be asked for: missing, not in flight
        ranks = list(range(self.size))
        self.rng.shuffle(ranks)
        self._rank = ranks  # random tie-break among equally rare books
        self._by_rank = sorted(range(self.size), key=ranks.__getitem__)  # the books in that order
        # the books by availability, as masks: _levels[a] holds the books a known peers hold. The rarest-first
        # order is the levels from the lowest, each in rank order: a pick looks at the lowest levels its
        # candidates reach, and a have moves a book up a level, with no order to sort again
        self._levels = [mask_of(self.size, range(self.size))]

    # -- availability -------------------------------------------------
    def peer_has(self, books: Iterable[int]) -> None:
        """A peer announced it holds ``books`` (a bitfield's indices or a have)."""
        self._shift([book for book in books if 0 <= book < self.size], 1)

    def peer_gone(self, peer: Peer, books: Iterable[int]) -> list[int]:
        """Forget a peer: its availability and its requests. Returns books it had in flight."""
        self._shift([book for book in books if 0 <= book < self.size], -1)
        returned = []
        for book, peers in list(self.in_flight.items()):
            if peer in peers:
                self.release(book, peer)
                returned.append(book)
        return returned

    def _shift(self, books: list[int], step: int) -> None:
        """Move ``books`` one level up (step 1) or down (-1, never below 0): a few bit by bit, many (a
        bitfield) at once."""
        availability, levels, size = self.availability, self._levels, self.size
        if len(books) > RELEVEL:
            for book in books:
                if availability[book] + step >= 0:
                    availability[book] += step
            rows = [bytearray((size + 7) // 8) for _ in range(max(availability) + 1)]
            for book, level in enumerate(availability):
                rows[level][book >> 3] |= 0x80 >> (book & 7)
            self._levels = [int.from_bytes(row, "big") for row in rows]
            return
        for book in books:
            level = availability[book]
            if level + step < 0:
                continue
            availability[book] = level + step
            one = bit(size, book)
            levels[level] ^= one
            if level + step == len(levels):
                levels.append(one)
            else:
                levels[level + step] |= one

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

    def askable(self, books: Iterable[int]) -> bool:
        """Whether any of ``books`` may be asked for now: missing, wanted and not in flight."""
        askable, size = self._askable, self.size
        return any(0 <= book < size and askable & bit(size, book) for book in books)

    def pick(self, peer: Peer, peer_books: Container[int], n: int) -> list[int]:
        """Up to ``n`` books to request from ``peer``, marking them in flight."""
        if n <= 0 or not self._missing:
            return []
        candidates = self._askable & self._mask(peer_books)
        if not candidates:
            chosen = self._endgame_choices(peer, peer_books, n)
        elif len(self.have) < RANDOM_FIRST:
            chosen = self._random(candidates, n)
        else:
            chosen = self._rarest(candidates, n)
        for book in chosen:
            self.in_flight.setdefault(book, set()).add(peer)
            self._askable &= ~bit(self.size, book)
        return chosen

    def _mask(self, peer_books: Container[int]) -> int:
        """The books of ``peer_books`` as a mask: a bitfield's own (or a bitfield less some books: ``mask``),
        else looked up book by book."""
        mask = getattr(peer_books, "mask", None)
        if isinstance(mask, int) and getattr(peer_books, "size", None) == self.size:
            return mask
        return mask_of(self.size, (book for book in self._missing if book in peer_books))

    def _random(self, candidates: int, n: int) -> list[int]:
        """Up to ``n`` of ``candidates`` at random. Many (an eighth of the books or more, as a seed offers):
        random books until enough are candidates, without listing them all; else listed and shuffled."""
        count = candidates.bit_count()
        if count <= 4 * n or count * 8 < self.size:
            fresh = books_of(self.size, candidates)
            self.rng.shuffle(fresh)
            return fresh[:n]
        held = candidates.to_bytes((self.size + 7) // 8, "big")
        chosen: list[int] = []
        while len(chosen) < n:  # each try is a candidate one time in eight or better
            book = self.rng.randrange(self.size)
            if held[book >> 3] & (0x80 >> (book & 7)) and book not in chosen:
                chosen.append(book)
        return chosen

    def _rarest(self, candidates: int, n: int) -> list[int]:
        """The ``n`` rarest of ``candidates`` (a mask of askable books), in (availability, random rank) order:
        the lowest levels first; of a level's candidates, few are sorted by rank, many found walking the rank
        order until enough are."""
        chosen: list[int] = []
        for level in self._levels:
            hit = candidates & level
            if not hit:
                continue
            want = n - len(chosen)
            if hit.bit_count() <= max(FEW, want):
                chosen += sorted(books_of(self.size, hit), key=self._rank.__getitem__)[:want]
            else:
                held = hit.to_bytes((self.size + 7) // 8, "big")  # the bitfield layout: book b in byte b >> 3
                for book in self._by_rank:
                    if held[book >> 3] & (0x80 >> (book & 7)):
                        chosen.append(book)
                        if len(chosen) == n:
                            break
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
                self._askable |= bit(self.size, book)  # in flight only ever holds missing books

    def received(self, book: int, peer: Peer) -> list[Peer]:
        """``book`` arrived from ``peer`` and was verified and written.

        Returns the other peers it was still requested from (to cancel).
        """
        others = [p for p in self.in_flight.pop(book, set()) if p != peer]
        self.have.add(book)
        self._missing.discard(book)
        if 0 <= book < self.size:
            self._askable &= ~bit(self.size, book)
        return others

    def unavailable(self) -> int:
        """Missing books that no known peer holds (no source to ask): those of the lowest level not in flight,
        and any in flight whose peer went away."""
        nowhere = (self._levels[0] & self._askable).bit_count()
        return nowhere + sum(1 for book in self.in_flight if self.availability[book] == 0)

    def wanted_from(self, peer_books: Container[int]) -> bool:
        """Whether a peer holding ``peer_books`` has anything we lack."""
        return any(b in peer_books for b in self._missing)
