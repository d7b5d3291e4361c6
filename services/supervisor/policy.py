"""The restart policy of one supervised service: pure state, fed ``now``.

How it works. A service is in one of the states of ``ServiceState``. The
Maestro reports what it observes -- ``spawned``, ``beat``, ``failed`` (an
exit, or a heartbeat older than ``liveness`` intervals), ``stopped`` -- and
asks ``due(now)`` whether a backed-off service should be spawned again.

The hang deadline is ``liveness`` intervals after the last beat less a
tenth of an interval (``HANG_EARLY``): the last beat always comes before the
hang, and the Maestro checks every tick, so the margin keeps a hang's
detection within ``liveness`` intervals of the moment the child stopped, not
a tick after.

A silence counts only while the Maestro itself kept up. The Maestro calls
``turn(now)`` each loop turn, before it reads beats; when two turns are more
than ``LATE_TURN`` intervals apart (it was starved of CPU, or busy), beats
may be waiting unread, so the hang clock (``watch_from``) restarts at that
turn: a child is hung only after ``liveness`` intervals without a beat during
which the Maestro's turns were never further apart than that.

Backoff doubles from ``initial_backoff`` to ``max_backoff`` and resets after
``stable_after`` seconds of running. More than ``max_failures`` failures in
``window`` seconds make the service FATAL (restart intensity, as in OTP): it
stays off until started again from the CLI.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

HANG_EARLY = 0.1  # intervals before the liveness deadline that a silent child counts as hung
LATE_TURN = 0.5  # intervals between two Maestro turns past which the Maestro was behind (0.25 s by default)


class ServiceState(enum.Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    FATAL = "FATAL"
    OFF = "OFF"


@dataclass
class RestartPolicy:
    interval: float = 0.5
    liveness: int = 3
    startup_timeout: float = 10.0
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    stable_after: float = 10.0
    max_failures: int = 5
    window: float = 30.0
    state: ServiceState = ServiceState.OFF
    restarts: int = 0
    started_at: float = 0.0
    last_beat: float | None = None
    watch_from: float = 0.0  # the hang clock: the later of the spawn, the last beat and the last late turn
    last_turn: float | None = None
    retry_at: float = 0.0
    failures: deque[float] = field(default_factory=deque)
    backoff: float = 0.0
    last_reason: str = ""

    def spawned(self, now: float) -> None:
        self.state = ServiceState.STARTING
        self.started_at = now
        self.watch_from = now
        self.last_beat = None

    def beat(self, now: float) -> None:
        """A beat, timed when the Maestro read it."""
        if self.state in (ServiceState.STARTING, ServiceState.RUNNING):
            self.state = ServiceState.RUNNING
            self.last_beat = now
            self.watch_from = max(self.watch_from, now)
            if now - self.started_at >= self.stable_after:
                self.backoff = 0.0

    def turn(self, now: float) -> float:
        """The Maestro starts a loop turn: how late it is (0.0 when on time); a late turn restarts the hang clock."""
        gap = 0.0 if self.last_turn is None else now - self.last_turn
        self.last_turn = now
        if gap <= LATE_TURN * self.interval:
            return 0.0
        self.watch_from = max(self.watch_from, now)
        return gap

    def hung(self, now: float) -> bool:
        """True when a live service has missed ``liveness`` beats (or never beat at start-up), counting only
        the time since the Maestro last fell behind (see ``turn``)."""
        if self.state is ServiceState.RUNNING and self.last_beat is not None:
            return now - self.watch_from > (self.liveness - HANG_EARLY) * self.interval
        if self.state is ServiceState.STARTING:
            return now - self.watch_from > self.startup_timeout
        return False

    def failed(self, now: float, reason: str, hopeless: bool = False) -> ServiceState:
        """The service exited or hung: BACKOFF, or FATAL past the restart intensity (or at once if ``hopeless``:
        it said it cannot run with its settings, so retrying cannot help)."""
        self.last_reason = reason
        if hopeless:
            self.failures.append(now)
            self.state = ServiceState.FATAL
            return self.state
        if now - self.started_at >= self.stable_after and self.state is ServiceState.RUNNING:
            self.backoff = 0.0
        self.failures.append(now)
        while self.failures and now - self.failures[0] > self.window:
            self.failures.popleft()
        if len(self.failures) > self.max_failures:
            self.state = ServiceState.FATAL
            return self.state
        self.backoff = self.initial_backoff if self.backoff == 0 else min(self.max_backoff, self.backoff * 2)
        self.retry_at = now + self.backoff
        self.state = ServiceState.BACKOFF
        return self.state

    def due(self, now: float) -> bool:
        return self.state is ServiceState.BACKOFF and now >= self.retry_at

    def stopped(self) -> None:
        """Stopped on purpose (CLI or shutdown): OFF, and the failure history is forgotten."""
        self.state = ServiceState.OFF
        self.failures.clear()
        self.backoff = 0.0

    def start_requested(self) -> bool:
        """A CLI start: only OFF and FATAL services can be started."""
        if self.state in (ServiceState.OFF, ServiceState.FATAL):
            self.failures.clear()
            self.backoff = 0.0
            return True
        return False

    def uptime(self, now: float) -> float:
        return now - self.started_at if self.state in (ServiceState.STARTING, ServiceState.RUNNING) else 0.0

    def heartbeat_age(self, now: float) -> float:
        return now - self.last_beat if self.last_beat is not None else -1.0
