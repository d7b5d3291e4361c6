"""How fast a player gains books: its count of books sampled over time. Pure state, fake-clock friendly.

The Requestor keeps one for its own download and one for each peer's (from the peer's bitfield and
``have`` messages), so it can tell the peers that download about as fast as it does from those on
slower links.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Pace:
    """Books gained per second, smoothed over the samples it is fed."""

    count: int = 0
    at: float | None = None
    rate: float = 0.0

    def sample(self, count: int, now: float) -> float:
        """The player holds ``count`` books at ``now``: its pace since the last sample, smoothed."""
        if self.at is not None and now > self.at:
            recent = max(0, count - self.count) / (now - self.at)
            self.rate = (self.rate + recent) / 2 if self.rate else recent
        self.count, self.at = count, now
        return self.rate
