"""A token bucket for upload and download rates; live-adjustable, fake-clock friendly.

Tokens are bytes. A transfer may start whenever the balance is not negative
and is then charged in full (the balance may go below zero), so a book larger
than the burst still goes out and the long-run rate is exact. A rate of 0
means unlimited. The bucket starts full: transfers begin at once.
"""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate: int, now: float, burst_seconds: float = 0.05) -> None:
        self.burst_seconds = burst_seconds
        self.rate = 0
        self.tokens = 0.0
        self.stamp = now
        self.set_rate(rate, now)

    def set_rate(self, rate: int, now: float) -> None:
        """Change the rate (bytes/s, 0 = unlimited); the balance refills to the new burst."""
        self._refill(now)
        self.rate = max(0, rate)
        self.tokens = self.burst

    @property
    def burst(self) -> float:
        return max(64 * 1024.0, self.rate * self.burst_seconds)

    def _refill(self, now: float) -> None:
        if self.rate:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def ready(self, now: float) -> bool:
        if not self.rate:
            return True
        self._refill(now)
        return self.tokens >= 0

    def take(self, amount: int, now: float) -> None:
        if self.rate:
            self._refill(now)
            self.tokens -= amount

    def wait(self, now: float) -> float:
        """Seconds until ``ready`` (0 if ready now)."""
        if not self.rate:
            return 0.0
        self._refill(now)
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
