"""When the Distributor announces each library it serves: plain logic fed ``now``, no sockets.

A library is announced when it starts being served, completes or stops (the Distributor
does that at once) and then periodically: at the interval the hub's last answer named,
sooner while the hub has not checked our endpoint yet (the Distributor passes that
interval in), and ANNOUNCE_DEFAULT after a send that was not answered yet. A failed
announce is tried again after a backoff: RETRY_FIRST seconds, doubled at each failure in a
row up to RETRY_MAX, each drawn at random between half and all of that (from an injectable
``random.Random``). So a thousand libraries whose hub is down neither flood it every two
seconds nor retry in step; the first answer resets the backoff.
"""

from __future__ import annotations

import random

ANNOUNCE_DEFAULT = 30.0  # seconds until the next periodic announce, until the hub names its interval
RETRY_FIRST = 2.0  # after a first failure, tried again within this (half of it at the soonest)
RETRY_MAX = 300.0  # the longest wait, however many failures


class Announces:
    def __init__(self, rng: random.Random | None = None, first: float = RETRY_FIRST, most: float = RETRY_MAX) -> None:
        self.rng = rng or random.Random()
        self.first = first
        self.most = most
        self.next_at: dict[bytes, float] = {}  # each library served: when to announce it next
        self.failures: dict[bytes, int] = {}  # failed announces in a row

    def sent(self, library_id: bytes, now: float) -> None:
        """An announce of ``library_id`` left: the next one after ANNOUNCE_DEFAULT, unless its answer says."""
        self.next_at[library_id] = now + ANNOUNCE_DEFAULT

    def answered(self, library_id: bytes, now: float, interval: float) -> None:
        """The hub answered: the backoff is over; the next announce in ``interval`` seconds (0: as sent)."""
        self.failures.pop(library_id, None)
        if interval and library_id in self.next_at:
            self.next_at[library_id] = now + interval

    def failed(self, library_id: bytes, now: float) -> float:
        """The announce failed: when to try again, in seconds from ``now`` (0.0 for a library no longer served)."""
        if library_id not in self.next_at:
            return 0.0
        count = self.failures[library_id] = self.failures.get(library_id, 0) + 1
        delay = min(self.most, self.first * 2.0 ** min(count - 1, 32)) * self.rng.uniform(0.5, 1.0)
        self.next_at[library_id] = now + delay
        return delay

    def due(self, now: float) -> list[bytes]:
        """The libraries whose periodic announce (or retry) is due."""
        return [library_id for library_id, at in self.next_at.items() if now >= at]

    def forget(self, library_id: bytes) -> None:
        """No longer served: no more announces."""
        self.next_at.pop(library_id, None)
        self.failures.pop(library_id, None)
