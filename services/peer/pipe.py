"""What a Distributor has handed to its socket and the socket has not yet passed to the kernel.

How this works. Every book the Distributor sends is a tracked send: ``put`` when it
is handed to the socket, ``drained`` when libzmq has written it to the kernel. The
kernel's own send buffers are kept small (the socket's SNDBUF), so when a link is
slower than the Distributor, the bytes wait here, where they can be seen. Each
requester may have about PIPE_SECONDS of the measured drain rate handed over (at
least PIPE_MIN, so a fast link is never throttled by a young estimate); beyond
that its requests wait in the Distributor's own queue, where they can still be
chosen among. The share is per requester, so one that stops reading holds only
its own share, never the others' (nor more than that share of memory); it is at
most PIPE_MAX, and once PIPE_TOTAL is handed over in all, only requesters with
nothing handed over get another book, so a crowd of stalled readers holds a bounded
total while every reader still gets its turn.

The link, not a setting, is the limit when no queued request can be handed over
(``blocked``), or when the pipe has not been empty for BUSY_LIMIT seconds (the
kernel's buffers are full, so every book waits for the link); it stays
``limited`` for LINK_HOLD seconds after either. Pure state: the caller passes
``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PIPE_SECONDS = 0.1
PIPE_MIN = 1 << 20
PIPE_MAX = 16 << 20  # one requester's share, at most, however fast the link
PIPE_TOTAL = 64 << 20  # all requesters' together: past it, only a requester with nothing handed over gets a book
LINK_HOLD = 2.0
BUSY_LIMIT = 0.5  # seconds without an empty pipe that mean the link is the limit
RATE_WINDOW = 0.25  # seconds of busy pipe per rate sample


@dataclass
class Pipe:
    queued: int = 0
    by_peer: dict[bytes, int] = field(default_factory=dict)
    rate: float = 0.0  # bytes/s the socket drained while it had something to drain, smoothed
    limited_at: float | None = None  # when the link last showed it is the limit
    _nonempty_since: float | None = None  # when the pipe last went from empty to not empty
    _busy_since: float | None = None  # the start of the busy time not yet counted in a sample
    _busy: float = 0.0  # seconds the pipe held bytes, in the current sample
    _bytes: int = 0  # bytes drained, in the current sample

    def put(self, nbytes: int, now: float, peer: bytes) -> None:
        """``nbytes`` for ``peer`` were handed to the socket."""
        if self.queued == 0:
            self._busy_since = self._nonempty_since = now
        self.queued += nbytes
        self.by_peer[peer] = self.by_peer.get(peer, 0) + nbytes
        self._note_busy(now)

    def drained(self, nbytes: int, now: float, peer: bytes) -> None:
        """The socket passed ``nbytes`` for ``peer`` on to the kernel (or dropped them: the peer is gone)."""
        self._note_busy(now)
        held = self.by_peer.pop(peer, 0)
        self.queued = max(0, self.queued - min(held, nbytes))  # a forgotten peer's bytes were taken off already
        if held > nbytes:
            self.by_peer[peer] = held - nbytes
        if not self.queued:
            self._nonempty_since = None
        self._bytes += nbytes
        if self._busy_since is not None:
            self._busy += now - self._busy_since
            self._busy_since = now if self.queued else None
        if self._busy >= RATE_WINDOW:  # only time with bytes waiting counts: the drain rate, not the demand
            sample = self._bytes / self._busy
            self.rate = sample if not self.rate else (self.rate + sample) / 2
            self._busy, self._bytes = 0.0, 0

    def forget(self, peer: bytes) -> None:
        """``peer`` is gone: what it held no longer counts (libzmq dropped it with the connection)."""
        self.queued = max(0, self.queued - self.by_peer.pop(peer, 0))
        if not self.queued:
            self._nonempty_since = None

    def _note_busy(self, now: float) -> None:
        if self._nonempty_since is not None and now - self._nonempty_since >= BUSY_LIMIT:
            self.limited_at = now

    @property
    def share(self) -> float:
        """What one requester may have handed over and not yet drained."""
        return min(PIPE_MAX, max(PIPE_MIN, self.rate * PIPE_SECONDS))

    def room(self, peer: bytes) -> bool:
        """Whether another book for ``peer`` may be handed to the socket now."""
        held = self.by_peer.get(peer, 0)
        return held == 0 or (held < self.share and self.queued < PIPE_TOTAL)

    def blocked(self, now: float) -> None:
        """Requests wait and none may be handed over: the link is the limit."""
        self.limited_at = now

    def limited(self, now: float) -> bool:
        """The link, not a setting, limits what is sent (it showed so within LINK_HOLD)."""
        return self.limited_at is not None and now - self.limited_at < LINK_HOLD
