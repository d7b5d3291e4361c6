"""Reports of unreachable endpoints, checked by the hub's own pings.

How this works: a report names (library, endpoint) and comes from a player of
that library (the handler checks that). A report never drops anyone by itself:
player ids cost nothing, so any number of reporters may be one liar. It queues
a ping of the endpoint: the broker takes queued endpoints with
:meth:`Unreachable.take_pings`, hands them to the pinger thread, and feeds
results back with :meth:`Unreachable.ping_done`, which names the libraries to
drop the endpoint from when the ping failed. An endpoint that answered is not
pinged again for ``cooldown`` seconds, whatever is reported of it meanwhile;
pings whose result never came are forgotten after ``window``. Every table is bounded.

The hub pings only endpoints it may: :meth:`allow` is told, at announce time,
of each endpoint whose host is the address the announce came from (or is in a
network the operator allows); any other endpoint is never pinged, so the hub
cannot be used to probe someone else's ports, and reports of it count for nothing.

Hubs sharing a store (Redis) share this bookkeeping through its
:class:`~services.hub.store.SharedState`: a report made to any of them joins
the one pending ping of that endpoint, only the hub that claimed the ping
pings, and every hub reads its verdict. Each hub keeps its own tables as a
cache in front of the shared ones, so an announce costs no extra round trip
while its verdict is fresh.

The same pings answer :meth:`Unreachable.probe`: whether the hub itself can
connect to a player's recorded endpoint, so that a player nobody can reach is
told so in its announce replies. A failed probe drops nobody.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.wire.pb import hub_pb2

if TYPE_CHECKING:
    from services.hub.store import SharedState

PROBE_KEEP_OK = 600.0  # seconds a reachable verdict stands before the endpoint is probed again
PROBE_KEEP_FAILED = 10.0  # a failed one is checked again soon: the user may be opening the port


@dataclass
class _Pending:
    since: float
    libraries: set[bytes] = field(default_factory=set)


class Unreachable:
    """Bookkeeping for unreachable reports and pings; no I/O, callers pass ``now``."""

    def __init__(self, window: float, max_pending: int, cooldown: float, max_keys: int = 100_000,
                 shared: SharedState | None = None) -> None:
        self.shared = shared
        self.window = window
        self.max_pending = max_pending
        self.cooldown = cooldown
        self.max_keys = max_keys
        self._allowed: dict[str, float] = {}  # endpoint -> until when the hub may ping it
        self._pending: dict[str, _Pending] = {}
        self._queue: list[str] = []
        self._verdicts: dict[str, tuple[int, float]] = {}  # endpoint -> (Reachability, when a ping told it)

    def allow(self, endpoint: str, now: float) -> None:
        """``endpoint`` announced itself from its own address: the hub may ping it for ``window`` seconds."""
        until = self._allowed.get(endpoint)
        if until is None and len(self._allowed) >= self.max_keys:
            del self._allowed[next(iter(self._allowed))]
        if self.shared is not None and (until is None or until - now < self.window / 2):
            self.shared.allow(endpoint, self.window)  # told to the other hubs every half window, not every announce
        self._allowed[endpoint] = now + self.window

    def may_ping(self, endpoint: str, now: float) -> bool:
        if self._allowed.get(endpoint, 0.0) > now:
            return True
        return self.shared is not None and self.shared.may_ping(endpoint)

    def want_ping(self, library_id: bytes, endpoint: str, now: float) -> bool:
        """Queue a ping of ``endpoint`` unless the hub may not ping it, one is pending, it answered less than
        ``cooldown`` ago, or too many are pending."""
        if not self.may_ping(endpoint, now):
            return False
        if self.shared is not None:
            if not self.shared.claim(endpoint, library_id, self.window, hub_pb2.REACHABLE, self.cooldown, now):
                return False  # another hub pings it, or it answered lately; the report joined that ping
            return self._queue_ping(endpoint, now, {library_id})
        pending = self._pending.get(endpoint)
        if pending is not None:
            pending.libraries.add(library_id)
            return False
        verdict = self._verdicts.get(endpoint)
        if verdict is not None and verdict[0] == hub_pb2.REACHABLE and now - verdict[1] < self.cooldown:
            return False
        return self._queue_ping(endpoint, now, {library_id})

    def probe(self, endpoint: str, now: float) -> int:
        """The hub's own verdict on ``endpoint`` (a ``Reachability``); unknown or stale queues a ping.

        An endpoint the hub may not ping stays REACHABILITY_UNKNOWN."""
        verdict = self._verdicts.get(endpoint)
        if verdict is not None and now - verdict[1] < _keep(verdict[0]):
            return verdict[0]
        if self._allowed.get(endpoint, 0.0) <= now:  # only the hub the endpoint announced to probes it
            return hub_pb2.REACHABILITY_UNKNOWN
        if self.shared is not None:
            told = self.shared.verdict(endpoint)
            if told is not None:
                self._remember(endpoint, told)
                if now - told[1] < _keep(told[0]):
                    return told[0]
                verdict = told
            if endpoint not in self._pending and self.shared.claim(endpoint, b"", self.window, -1, 0.0, now):
                self._queue_ping(endpoint, now, set())
        elif endpoint not in self._pending:
            self._queue_ping(endpoint, now, set())
        return verdict[0] if verdict is not None else hub_pb2.REACHABILITY_UNKNOWN

    def _queue_ping(self, endpoint: str, now: float, libraries: set[bytes]) -> bool:
        if len(self._pending) >= self.max_pending:
            return False
        self._pending[endpoint] = _Pending(since=now, libraries=libraries)
        self._queue.append(endpoint)
        return True

    def take_pings(self) -> list[str]:
        """Endpoints queued for a ping since the last call."""
        queued, self._queue = self._queue, []
        return queued

    def ping_done(self, endpoint: str, reachable: bool, now: float) -> list[bytes]:
        """Record a ping result; return the libraries to drop ``endpoint`` from (empty if reachable)."""
        pending = self._pending.pop(endpoint, None)
        verdict = hub_pb2.REACHABLE if reachable else hub_pb2.UNREACHABLE
        self._remember(endpoint, (verdict, now))
        libraries = set(pending.libraries) if pending is not None else set()
        if self.shared is not None:
            libraries.update(self.shared.done(endpoint, verdict, now, _keep(verdict) + PROBE_KEEP_OK))
        if reachable:
            return []
        return sorted(libraries)

    def _remember(self, endpoint: str, verdict: tuple[int, float]) -> None:
        if len(self._verdicts) >= self.max_keys and endpoint not in self._verdicts:
            del self._verdicts[next(iter(self._verdicts))]
        self._verdicts[endpoint] = verdict

    def sweep(self, now: float) -> None:
        """Forget lost pings, expired permissions, and verdicts long past their use."""
        self._allowed = {ep: until for ep, until in self._allowed.items() if until > now}
        self._pending = {ep: p for ep, p in self._pending.items() if now - p.since < self.window}
        self._verdicts = {ep: v for ep, v in self._verdicts.items() if now - v[1] < _keep(v[0]) + PROBE_KEEP_OK}

    @property
    def pending_pings(self) -> int:
        return len(self._pending)


def _keep(verdict: int) -> float:
    """Seconds a verdict stands before the endpoint is probed again."""
    return PROBE_KEEP_OK if verdict == hub_pb2.REACHABLE else PROBE_KEEP_FAILED
