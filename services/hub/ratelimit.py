"""Per-client token buckets, keyed by ROUTER identity or by address.

How this works: each client has ``(tokens, last_seen)``. A request refills
``rate * (now - last_seen)`` tokens up to ``burst`` and then spends one; with
less than one token the request is refused. A bucket idle long enough to be
full again carries no information, so :meth:`RateLimiter.sweep` forgets it;
memory stays bounded by the clients active in the last ``burst / rate``
seconds, and by ``max_clients`` (past it, the longest-known bucket goes first).
"""

from __future__ import annotations


class RateLimiter:
    """Token bucket per client; ``rate <= 0`` disables limiting."""

    def __init__(self, rate: float, burst: float, max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_clients = max_clients
        self._buckets: dict[bytes, tuple[float, float]] = {}

    def check(self, client: bytes, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens for ``client`` at time ``now``; False (refused, nothing spent) when it has fewer
        left."""
        if self.rate <= 0:
            return True
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                del self._buckets[next(iter(self._buckets))]
            tokens = self.burst
        else:
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        if tokens < cost:
            self._buckets[client] = (tokens, now)
            return False
        self._buckets[client] = (tokens - cost, now)
        return True

    def sweep(self, now: float) -> int:
        """Forget buckets that have refilled completely; return how many were forgotten."""
        if self.rate <= 0:
            return 0
        full_after = self.burst / self.rate
        idle = [client for client, (_, last) in self._buckets.items() if now - last >= full_after]
        for client in idle:
            del self._buckets[client]
        return len(idle)

    def __len__(self) -> int:
        return len(self._buckets)
