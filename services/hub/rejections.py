"""Refused requests, counted per client and logged as a sample, never a line each.

How this works: :meth:`Rejections.refused` counts a refusal for a client (its
address when known, else its ROUTER identity, so that a client changing
identities still gets one line). The first refusal of a client in an interval
is logged at once with its code and reason; the rest only add to its count,
which :meth:`Rejections.flush` logs (one line per client that was refused
again, with how many times and the last reason) when the interval is over.
At most ``max_clients`` clients are tracked; past that, refusals of new
clients go into one ``other`` line. Pure: callers pass ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.runtime.logs import get_logger

log = get_logger("events")
OTHER = "other"


@dataclass
class _Seen:
    count: int  # refusals not yet logged
    code: str
    reason: str


class Rejections:
    """Per-client refusal counts; see the module comment."""

    def __init__(self, interval: float = 60.0, max_clients: int = 1000) -> None:
        self.interval = interval
        self.max_clients = max_clients
        self.total = 0
        self._seen: dict[str, _Seen] = {}
        self._flush_at: float | None = None

    def refused(self, client: str, code: str, reason: str, now: float) -> None:
        self.total += 1
        seen = self._seen.get(client)
        if seen is None and len(self._seen) >= self.max_clients:
            client, seen = OTHER, self._seen.get(OTHER)
        if seen is None:
            self._seen[client] = _Seen(0, code, reason)
            log.info("hub_rejected", client=client, code=code, reason=reason, count=1)
        else:
            seen.count += 1
            seen.code, seen.reason = code, reason
        if self._flush_at is None:
            self._flush_at = now + self.interval
        elif now >= self._flush_at:
            self.flush(now)

    def flush(self, now: float) -> None:
        """Log the counts of the interval that ended and start a new one."""
        if self._flush_at is None or now < self._flush_at:
            return
        for client, seen in self._seen.items():
            if seen.count:
                log.info("hub_rejected", client=client, code=seen.code, reason=seen.reason, count=seen.count,
                         seconds=self.interval)
        self._seen.clear()
        self._flush_at = None

    def __len__(self) -> int:
        return len(self._seen)
