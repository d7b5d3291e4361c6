"""Credit-based flow control: how many requests may be in flight to one peer.

The window starts at ``initial`` and grows by one for each book written
(additive increase) up to ``maximum`` and the peer's advertised upload slots;
a busy reply or a timeout halves it (multiplicative decrease), never below 1.

It also follows what the peer actually delivers: each arrival gives a round
trip (request sent -> book in) and adds to the delivered rate, and the window
is held to about rate x (shortest round trip + RTT_SLACK) in books, plus one
to keep probing for more, and never below PIPELINE: one book on its way and
the next request already waiting at the peer, so that the peer's link does
not idle for a round trip (and our turn) after each book. Without that floor
a seed shared by many requesters, each getting a small part of its link,
had one request from each: the window it supported was its own, its link sat
idle between a book and the next request, and the whole swarm waited on it.
A peer whose link is slow, or shared by many
requesters, thus gets few requests at a time: they do not wait behind a
backlog there while a faster peer idles (requests queued at the peer only
lengthen the round trip, which shrinks the window). Pure state: the caller
passes ``now`` and the requestor acts on the answers.

It also counts the bytes of the books it holds credit for (requested, or
arrived and not yet written), so the requestor can bound the memory of all
its windows together (``IN_FLIGHT_BYTES``) whatever the book size: every window of
one requestor adds to one ``Held`` tally, so the total is known without a look at
each window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IN_FLIGHT_BYTES = 64 << 20  # books requested or unwritten, over all remotes: the requestor's memory bound
RTT_SLACK = 0.05  # seconds of jitter the window allows on top of the shortest round trip
RATE_WINDOW = 0.5  # seconds of arrivals per delivered-rate sample
PIPELINE = 2.0  # the fewest requests the delivered rate holds a window to: one arriving, one waiting


@dataclass
class Held:
    """The bytes of books that a requestor's windows together hold credit for."""

    bytes: int = 0


@dataclass
class Window:
    initial: int = 4
    maximum: int = 64
    timeout: float = 15.0
    size: float = field(init=False)
    limit: int = field(init=False)
    sent: dict[tuple[bytes, int], float] = field(default_factory=dict)
    landing: set[tuple[bytes, int]] = field(default_factory=set)
    sizes: dict[tuple[bytes, int], int] = field(default_factory=dict)
    held_bytes: int = 0
    pool: Held = field(default_factory=Held)  # the tally this window's bytes count in, with its requestor's others
    rtt_min: float | None = None  # the shortest round trip of a book seen from this peer
    rate: float = 0.0  # bytes/s this peer delivered, smoothed
    supported: float = float("inf")  # the window, in books, that rate and round trip call for
    _since: float | None = None
    _bytes: int = 0

    def __post_init__(self) -> None:
        self.size = float(self.initial)
        self.limit = self.maximum

    def advertise(self, slots: int) -> None:
        """The peer said it accepts ``slots`` requests in flight."""
        if slots > 0:
            self.limit = max(1, min(self.maximum, slots))
            self.size = min(self.size, self.limit)

    @property
    def credit(self) -> int:
        """How many more requests may be sent now: a book holds its credit until it is written,
        so the memory held by received-but-unwritten books is bounded by the window."""
        return max(0, int(self.size) - len(self.sent) - len(self.landing))

    def arrived(self, key: tuple[bytes, int], now: float) -> bool:
        """A requested book arrived and goes to be verified and written; False if it was not in flight."""
        sent_at = self.sent.pop(key, None)
        if sent_at is None:
            return False
        self.landing.add(key)
        self._delivered(now - sent_at, self.sizes.get(key, 0), now)
        return True

    def _delivered(self, rtt: float, nbytes: int, now: float) -> None:
        """Learn from one arrival: the round trip, the delivered rate, and so the window it supports."""
        self.rtt_min = rtt if self.rtt_min is None else min(self.rtt_min, rtt)
        if self._since is None:
            self._since, self._bytes = now - rtt, 0  # the first book's trip is the first sample's span
        self._bytes += nbytes
        span = now - self._since
        if span >= RATE_WINDOW:
            sample = self._bytes / span
            self.rate = sample if not self.rate else (self.rate + sample) / 2
            self._since, self._bytes = now, 0
        if self.rate and nbytes:
            self.supported = max(PIPELINE, self.rate * (self.rtt_min + RTT_SLACK) / nbytes + 1)
            self.size = max(1.0, min(self.size, self.supported))

    def landed(self, key: tuple[bytes, int]) -> None:
        """A book that arrived was written (or rejected): its credit is free again."""
        if key in self.landing:
            self.landing.discard(key)
            self._release(key)
            self.size = max(1.0, min(float(self.limit), self.size + 1, self.supported))

    def on_send(self, key: tuple[bytes, int], now: float, length: int = 0) -> None:
        """A request for a book of ``length`` bytes went out."""
        self._release(key)
        self.sent[key] = now
        self.sizes[key] = length
        self.held_bytes += length
        self.pool.bytes += length

    def on_busy(self, key: tuple[bytes, int]) -> None:
        self.forget(key)
        self.size = max(1.0, self.size / 2)

    def forget(self, key: tuple[bytes, int]) -> bool:
        """A request was cancelled or refused; True if it was in flight."""
        if self.sent.pop(key, None) is None:
            return False
        self._release(key)
        return True

    def _release(self, key: tuple[bytes, int]) -> None:
        length = self.sizes.pop(key, 0)
        self.held_bytes -= length
        self.pool.bytes -= length

    def close(self) -> None:
        """The peer is forgotten: the bytes of its books no longer count in the pool."""
        self.pool.bytes -= self.held_bytes
        self.held_bytes = 0
        self.sizes.clear()

    def expired(self, now: float) -> list[tuple[bytes, int]]:
        """Requests older than the timeout: removed, and the window shrinks."""
        late = [key for key, at in self.sent.items() if now - at > self.timeout]
        for key in late:
            del self.sent[key]
            self._release(key)
        if late:
            self.size = max(1.0, self.size / 2)
        return late
