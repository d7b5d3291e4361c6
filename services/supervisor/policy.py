"""The restart policy of one supervised service: pure state, fed ``now``.

How it works. A service is in one of the states of ``ServiceState``. The
Maestro reports what it observes -- ``spawned``, ``beat`` -- and each loop
turn calls ``poll(now, exit_status)`` with its child's exit status (None while
it runs), which returns what to do: a ``Decision`` to do nothing, send SIGTERM,
send SIGKILL or spawn the service again, with the failure or the end of a stop
it decided on, for the log. Nothing here waits: every deadline is a time that
a later ``poll`` compares with ``now``.

- An exit of a live child, or a heartbeat older than ``liveness`` intervals,
  is a failure (``failed``). A hung child is sent SIGTERM and, if it is still
  there ``hang_grace`` seconds later, SIGKILL; it is respawned only once it is
  gone. Each respawn is counted in ``restarts``.
- ``stop_requested(now, grace)`` (the CLI, or the Maestro shutting down) puts a
  live child in STOPPING: SIGTERM now, SIGKILL at ``now + grace``, OFF once
  its process is gone. Meanwhile nothing else waits on it.

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

A child that has not beaten yet is hung only after ``startup_timeout``
seconds in which it used no CPU (``poll``'s ``cpu``: its CPU seconds so far,
when the Maestro can read them): a child still importing on a host that
starts many players at once is slow, not stuck, and killing it would only
make the next start slower. Progress counts for ``MAX_STARTUP`` seconds
after the spawn; a child that computes for longer without a beat is hung
``startup_timeout`` later. A start-up failure still doubles the next
allowance, up to ``MAX_STARTUP`` (a cold disk blocks without CPU); the first
beat puts it back to ``base_startup``.

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
MAX_STARTUP = 160.0  # seconds: the longest start-up allowance after repeated slow starts
LATE_TURN = 0.5  # intervals between two Maestro turns past which the Maestro was behind (0.25 s by default)


class ServiceState(enum.Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    FATAL = "FATAL"
    OFF = "OFF"
    STOPPING = "STOPPING"


LIVE = (ServiceState.STARTING, ServiceState.RUNNING)  # a service whose process should be running


class Action(enum.Enum):
    """What the Maestro does to the service's process after a ``poll``."""

    NONE = "none"
    TERMINATE = "terminate"  # SIGTERM
    KILL = "kill"  # SIGKILL
    SPAWN = "spawn"


class Ending(enum.Enum):
    """How a stop ended, for the log."""

    ALREADY_EXITED = "already exited"
    EXITED = "exited"  # after the SIGTERM, before the grace was over
    KILLED = "killed"


@dataclass(frozen=True)
class Decision:
    action: Action = Action.NONE
    failure: str = ""  # a failure decided at this poll (the state then says BACKOFF or FATAL)
    stopped: Ending | None = None  # a stop that ended at this poll (the state is now OFF)


@dataclass
class RestartPolicy:
    interval: float = 0.5
    liveness: int = 3
    startup_timeout: float = 10.0
    base_startup: float = 0.0  # the configured start-up allowance (set from startup_timeout)
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    stable_after: float = 10.0
    max_failures: int = 5
    window: float = 30.0
    hang_grace: float = 0.3  # seconds between the SIGTERM and the SIGKILL of a hung child
    state: ServiceState = ServiceState.OFF
    restarts: int = 0
    started_at: float = 0.0
    last_beat: float | None = None
    watch_from: float = 0.0  # the hang clock: the later of the spawn, the last beat, the last late turn and (while
    # it starts) the child's last use of CPU
    last_turn: float | None = None
    retry_at: float = 0.0
    failures: deque[float] = field(default_factory=deque)
    backoff: float = 0.0
    last_reason: str = ""
    ending: bool = False  # the process was signalled and is not yet seen gone
    kill_at: float = 0.0  # when an ending process that is still there gets SIGKILL
    kill_sent: bool = False
    cpu_seen: float = 0.0  # the CPU seconds a starting child had used at the last look
    progress_at: float | None = None  # when a starting child was last seen using CPU

    def poll(self, now: float, exit_status: int | None, hopeless: bool = False, cpu: float | None = None) -> Decision:
        """One turn's decision, given the child's exit status (None while its process runs); ``hopeless``: that
        exit said the service cannot run with its settings (FATAL at once, see ``failed``); ``cpu``: the CPU
        seconds the child has used, None when unknown (read only while it starts: see ``progressed``)."""
        if cpu is not None:
            self.progressed(now, cpu)
        if self.ending:
            if exit_status is None:
                if now >= self.kill_at and not self.kill_sent:
                    self.kill_sent = True
                    return Decision(Action.KILL)
                return Decision()
            self.ending = False
            if self.state is ServiceState.STOPPING:
                self.stopped()
                return Decision(stopped=Ending.KILLED if self.kill_sent else Ending.EXITED)
        elif self.state in LIVE:
            if exit_status is not None:
                reason = f"exited with status {exit_status}"
                self.failed(now, reason, hopeless)
                return Decision(failure=reason)
            if self.hung(now):
                reason = self.hang_reason(now)
                self.failed(now, reason)
                self._signal(now, self.hang_grace)
                return Decision(Action.TERMINATE, failure=reason)
        if self.due(now):
            self.restarts += 1
            return Decision(Action.SPAWN)
        return Decision()

    def stop_requested(self, now: float, grace: float) -> Decision:
        """Stop on purpose: a live process gets SIGTERM now and SIGKILL after ``grace`` (see ``poll``)."""
        if self.ending:  # already signalled (a hang): keep its earlier SIGKILL time
            self.state = ServiceState.STOPPING
            self.kill_at = min(self.kill_at, now + grace)
            return Decision()
        if self.state in LIVE:
            self.state = ServiceState.STOPPING
            self._signal(now, grace)
            return Decision(Action.TERMINATE)
        if self.state is ServiceState.STOPPING:
            return Decision()
        self.stopped()
        return Decision(stopped=Ending.ALREADY_EXITED)

    def _signal(self, now: float, grace: float) -> None:
        self.ending = True
        self.kill_at = now + grace
        self.kill_sent = False

    def silence(self, now: float) -> float:
        """Seconds since the last beat, or since the spawn when it never beat."""
        return now - (self.last_beat if self.last_beat is not None else self.started_at)

    def __post_init__(self) -> None:
        self.base_startup = self.base_startup or self.startup_timeout

    def spawned(self, now: float) -> None:
        self.state = ServiceState.STARTING
        self.started_at = now
        self.watch_from = now
        self.last_beat = None
        self.cpu_seen = 0.0
        self.progress_at = None

    def progressed(self, now: float, cpu: float) -> None:
        """A starting child has used ``cpu`` CPU seconds: more than at the last look restarts its start-up clock
        (within MAX_STARTUP of the spawn)."""
        if self.state is ServiceState.STARTING and cpu > self.cpu_seen and now - self.started_at < MAX_STARTUP:
            self.watch_from = max(self.watch_from, now)
            self.progress_at = now
        self.cpu_seen = max(self.cpu_seen, cpu)

    def beat(self, now: float) -> None:
        """A beat, timed when the Maestro read it."""
        if self.state in LIVE:
            self.state = ServiceState.RUNNING
            self.startup_timeout = self.base_startup
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

    def hang_reason(self, now: float) -> str:
        """Why ``hung`` is true, in words."""
        if self.last_beat is None:
            if self.progress_at is not None:  # it used CPU for a while, then none
                return (f"hung: no first heartbeat {now - self.started_at:.0f}s after start, and no CPU used in "
                        f"the last {self.startup_timeout:.0f}s")
            return f"hung: no first heartbeat within {self.startup_timeout:.0f}s of start"
        return f"hung: no heartbeat for {self.silence(now):.2f}s"

    def failed(self, now: float, reason: str, hopeless: bool = False) -> ServiceState:
        """The service exited or hung (see ``poll``): BACKOFF, or FATAL past the restart intensity (or at once if
        ``hopeless``: it said it cannot run with its settings, so retrying cannot help)."""
        self.last_reason = reason
        if self.state is ServiceState.STARTING and self.last_beat is None \
                and now - self.watch_from > self.startup_timeout:
            self.startup_timeout = min(MAX_STARTUP, self.startup_timeout * 2)  # slow, not stuck: more time
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
        """Whether to spawn again: backed off long enough, and the last process is gone."""
        return self.state is ServiceState.BACKOFF and now >= self.retry_at and not self.ending

    def stopped(self) -> None:
        """Stopped on purpose (CLI or shutdown) and gone: OFF, and the failure history is forgotten."""
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
        return now - self.started_at if self.state in LIVE else 0.0

    def heartbeat_age(self, now: float) -> float:
        return now - self.last_beat if self.last_beat is not None else -1.0
