"""Reports of unreachable endpoints and the hub's own reachability pings.

How this works: a report names (library, endpoint) and the reporting player.
Distinct reporters are remembered per (library, endpoint) for ``window``
seconds; when ``threshold`` of them agree, :meth:`Unreachable.report` says so
and the caller drops the endpoint's players. Short of that, the first report
queues a ping: the broker takes queued endpoints with :meth:`take_pings`,
hands them to the pinger thread, and feeds results back with
:meth:`ping_done`, which names the libraries to drop the endpoint from when
the ping failed. An endpoint that answered a ping is not pinged again for
``cooldown`` seconds; pings whose result never came are forgotten after
``window``. Every table is bounded.

The same pings answer :meth:`Unreachable.probe`: whether the hub itself can
connect to a player's recorded endpoint, so that a player nobody can reach is
told so in its announce replies. A failed probe drops nobody.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.wire.pb import hub_pb2

PROBE_KEEP_OK = 600.0  # seconds a reachable verdict stands before the endpoint is probed again
PROBE_KEEP_FAILED = 10.0  # a failed one is checked again soon: the user may be opening the port


@dataclass
class _Pending:
    since: float
    libraries: set[bytes] = field(default_factory=set)


class Unreachable:
    """Bookkeeping for unreachable reports and pings; no I/O, callers pass ``now``."""

    def __init__(
        self, threshold: int, window: float, max_pending: int, cooldown: float, max_keys: int = 100_000
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.max_pending = max_pending
        self.cooldown = cooldown
        self.max_keys = max_keys
        self._reports: dict[tuple[bytes, str], dict[bytes, float]] = {}
        self._pending: dict[str, _Pending] = {}
        self._queue: list[str] = []
        self._reachable_until: dict[str, float] = {}
        self._verdicts: dict[str, tuple[int, float]] = {}  # endpoint -> (Reachability, valid until)

    def report(self, library_id: bytes, endpoint: str, reporter_id: bytes, now: float) -> bool:
        """Record a report; True when enough distinct players agree (the record is then cleared)."""
        key = (library_id, endpoint)
        reporters = self._reports.get(key)
        if reporters is None:
            if len(self._reports) >= self.max_keys:
                del self._reports[next(iter(self._reports))]
            reporters = self._reports[key] = {}
        reporters[reporter_id] = now
        fresh = {who: when for who, when in reporters.items() if now - when < self.window}
        if len(fresh) >= self.threshold:
            del self._reports[key]
            return True
        self._reports[key] = fresh
        return False

    def want_ping(self, library_id: bytes, endpoint: str, now: float) -> bool:
        """Queue a ping of ``endpoint`` unless one is pending, it answered lately, or too many are pending."""
        pending = self._pending.get(endpoint)
        if pending is not None:
            pending.libraries.add(library_id)
            return False
        if self._reachable_until.get(endpoint, 0.0) > now or len(self._pending) >= self.max_pending:
            return False
        self._pending[endpoint] = _Pending(since=now, libraries={library_id})
        self._queue.append(endpoint)
        return True

    def probe(self, endpoint: str, now: float) -> int:
        """The hub's own verdict on ``endpoint`` (a ``Reachability``); unknown or stale queues a ping."""
        verdict = self._verdicts.get(endpoint)
        if verdict is not None and verdict[1] > now:
            return verdict[0]
        if endpoint not in self._pending and len(self._pending) < self.max_pending:
            self._pending[endpoint] = _Pending(since=now)
            self._queue.append(endpoint)
        return verdict[0] if verdict is not None else hub_pb2.REACHABILITY_UNKNOWN

    def take_pings(self) -> list[str]:
        """Endpoints queued for a ping since the last call."""
        queued, self._queue = self._queue, []
        return queued

    def ping_done(self, endpoint: str, reachable: bool, now: float) -> list[bytes]:
        """Record a ping result; return the libraries to drop ``endpoint`` from (empty if reachable)."""
        pending = self._pending.pop(endpoint, None)
        if len(self._verdicts) >= self.max_keys and endpoint not in self._verdicts:
            del self._verdicts[next(iter(self._verdicts))]
        self._verdicts[endpoint] = ((hub_pb2.REACHABLE, now + PROBE_KEEP_OK) if reachable
                                    else (hub_pb2.UNREACHABLE, now + PROBE_KEEP_FAILED))
        if reachable:
            if len(self._reachable_until) >= self.max_keys:
                del self._reachable_until[next(iter(self._reachable_until))]
            self._reachable_until[endpoint] = now + self.cooldown
            return []
        libraries = sorted(pending.libraries) if pending is not None else []
        for library_id in libraries:
            self._reports.pop((library_id, endpoint), None)
        return libraries

    def forget(self, library_id: bytes, endpoint: str) -> None:
        """Clear reports about an endpoint that was dropped some other way."""
        self._reports.pop((library_id, endpoint), None)

    def sweep(self, now: float) -> None:
        """Forget stale reports, lost pings and expired cooldowns."""
        self._reports = {
            key: fresh
            for key, reporters in self._reports.items()
            if (fresh := {who: when for who, when in reporters.items() if now - when < self.window})
        }
        self._pending = {ep: p for ep, p in self._pending.items() if now - p.since < self.window}
        self._reachable_until = {ep: until for ep, until in self._reachable_until.items() if until > now}
        self._verdicts = {ep: v for ep, v in self._verdicts.items() if v[1] > now - PROBE_KEEP_OK}

    @property
    def pending_pings(self) -> int:
        return len(self._pending)
