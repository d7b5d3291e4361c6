"""Durations counted into fixed buckets: a histogram cheap enough to feed on every request or write.

Each count is for its own bucket (not cumulative); :func:`cumulative` gives the
Prometheus shape. A bisect and two additions per observation, no lock: the
owner is one loop, and readers take published copies.
"""

from __future__ import annotations

from bisect import bisect_left

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Latency:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds


def cumulative(counts: list[int] | tuple[int, ...]) -> list[tuple[str, int]]:
    """(upper bound, observations at or below it) per bucket, ending with +Inf."""
    out, running = [], 0
    for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
        running += count
        out.append((bound, running))
    return out
