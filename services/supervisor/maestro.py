"""The Maestro: a player's supervisor process.

It spawns the Distributor and the Requestor as child processes, takes their
heartbeats on a PULL socket, and does what each service's RestartPolicy
decides (``poll``): an exit or ``liveness`` missed beats is a failure (a hung
child gets SIGTERM, then SIGKILL after the policy's ``hang_grace``), followed
by a respawn after backoff, or FATAL past the restart intensity. It answers
the CLI on a ROUTER control socket; what a CLI asks that changes the player's
libraries (get, pause, resume, remove, share) it forwards to the Requestor on
``run/requestor.sock`` and answers when the Requestor does (``forward.py``: never
waiting, bounded, an error when the Requestor does not run or answer). It does
no transfer work itself and writes neither state.db nor libs/. One
Maestro per data directory, enforced with an exclusive lock on
``<data>/run/maestro.lock``.

The loop never waits on a child. Stopping a service, or all of them at
shutdown (every child signalled at once), puts it in STOPPING and the loop
carries on -- beats read, the control socket answered -- until the policy sees
its process gone, sending SIGKILL once the ``maestro.stop_grace`` setting is over.

Both sockets are open to anything that can reach ``<data>/run/``, so neither
may be trusted to be quiet. Each loop turn reads at most HEARTBEAT_BATCH
heartbeat frames and CONTROL_BATCH control requests; a beat is timed when it
is read, not when the turn began; frames that are not a beat from a live
child are counted and logged at most once every LOG_EVERY seconds; and a
turn that comes late restarts the hang clocks (``RestartPolicy.turn``), so a
flood or a stall of the Maestro itself never makes a healthy child look hung.

Run: ``python -m services.supervisor.maestro --data-dir D``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zmq
from google.protobuf.message import DecodeError

from services.peer.requestor_logic import hub_counter, peers_counter, refused_counter, stalled_counter
from services.peer.state import State, StateError
from services.runtime import config as config_mod
from services.runtime import rundir
from services.runtime.heartbeat import LAST_WORDS, MAX_BEAT_BYTES
from services.runtime.logs import get_logger, setup_logging
from services.runtime.metrics_http import MetricsEndpoint, exposition
from services.runtime.rundir import SERVICES, control_endpoint, heartbeat_endpoint, metrics_url_file
from services.runtime.service import EXIT_UNUSABLE
from services.supervisor.child import Child
from services.supervisor.control_logic import MAX_CONTROL_BYTES, ControlLogic, Forward
from services.supervisor.forward import Answer, Forwarder
from services.supervisor.metrics import PlayerCollector, ServiceView
from services.supervisor.policy import LIVE, Action, Decision, RestartPolicy, ServiceState
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.ids import InvalidEndpoint
from services.wire.pb import control_pb2
from services.wire.versions import CONTROL

log = get_logger("services")
TICK = 0.1  # the longest wait for news; a child's exit (SIGCHLD) or a signal to stop wakes the loop at once
HEARTBEAT_BATCH = 256  # heartbeat frames read per loop turn at most (about 5 ms of garbage)
CONTROL_BATCH = 16  # control requests answered per loop turn at most
LOG_EVERY = 10.0  # seconds between two log lines about dropped frames of one kind (every one is counted)
DETAIL_CHARS = 300  # what a child says of itself is shown up to this length


class AlreadyRunning(RuntimeError):
    """Another Maestro holds this data directory."""


@dataclass
class Supervised:
    child: Child
    policy: RestartPolicy
    last: control_pb2.Heartbeat | None = None
    counters: dict[str, int] = field(default_factory=dict)
    last_words: str = ""  # what the child said as it crashed (see heartbeat.LAST_WORDS)


@dataclass
class Tally:
    """Frames dropped from a flood: each one counted, logged at most once every ``every`` seconds."""

    every: float = LOG_EVERY
    total: int = 0
    unlogged: int = 0
    next_log: float = 0.0

    def add(self, now: float) -> int:
        """Count one; how many to log now (0: stay quiet, they are logged later)."""
        self.total += 1
        self.unlogged += 1
        return self.due(now)

    def due(self, now: float) -> int:
        """How many counted ones to log now, if the quiet period is over (0 otherwise)."""
        if not self.unlogged or now < self.next_log:
            return 0
        self.next_log = now + self.every
        count, self.unlogged = self.unlogged, 0
        return count


def unusable_reason(out: Path, name: str) -> str:
    """What a service that cannot start wrote last in its .out file (``<name> cannot start: ...``), or ""."""
    try:
        with open(out, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4096))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    said = [line for line in tail.splitlines() if line.startswith(f"{name} cannot start: ")]
    return said[-1].removeprefix(f"{name} cannot start: ")[:DETAIL_CHARS] if said else ""


class Wakeup:
    """A pipe the loop polls beside its sockets, written when a signal arrives (``signal.set_wakeup_fd``): a
    child's exit (SIGCHLD) or a request to stop is seen at once, not at the next tick. Outside the main thread
    (where signals cannot be set) ``fd`` is None and the tick alone notices them."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self._pipe: tuple[int, int] | None = None
        self._restore: tuple[int, Any] | None = None

    def __enter__(self) -> Wakeup:
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        try:
            previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
            previous_handler = signal.signal(signal.SIGCHLD, _noticed)
        except ValueError:  # not the main thread
            os.close(read)
            os.close(write)
            return self
        self._pipe, self._restore, self.fd = (read, write), (previous_fd, previous_handler), read
        return self

    def drain(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(BlockingIOError):
                while os.read(self.fd, 4096):
                    pass

    def __exit__(self, *exc: object) -> None:
        if self._pipe is None or self._restore is None:
            return
        signal.signal(signal.SIGCHLD, self._restore[1])
        signal.set_wakeup_fd(self._restore[0])
        for fd in self._pipe:
            os.close(fd)
        self.fd = self._pipe = self._restore = None


def _noticed(signum: int, frame: object) -> None:
    """SIGCHLD: nothing to do here; the wakeup pipe has woken the loop, which reaps the child."""


def acquire_lock(run_dir: Path) -> IO[str]:
    """Hold ``maestro.lock`` for the life of the process, or raise AlreadyRunning."""
    rundir.make(run_dir)
    handle = open(rundir.lock_file(run_dir), "a+")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        pid = rundir.maestro_pid(run_dir) or "?"
        raise AlreadyRunning(f"a player already runs for {run_dir.parent} (pid {pid}); stop it with `emma peer stop`"
                             ) from exc
    return handle


class Maestro:
    def __init__(self, config: config_mod.Config, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.run_dir = config.run_dir
        self.lock = acquire_lock(self.run_dir)
        rundir.pid_file(self.run_dir).write_text(str(os.getpid()))
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.beats = self.ctx.socket(zmq.PULL)
        self.beats.setsockopt(zmq.MAXMSGSIZE, MAX_BEAT_BYTES)
        self.beats.setsockopt(zmq.LINGER, 0)
        self.beats.bind(heartbeat_endpoint(self.run_dir))
        self.control = self.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.MAXMSGSIZE, MAX_CONTROL_BYTES)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.bind(control_endpoint(self.run_dir))
        self.state = State(config.state_db)  # read (the downloads view); opening it migrates an older schema
        self.logic = ControlLogic(self, config, self.state)
        self.forwarder = Forwarder()
        self.poller = zmq.Poller()
        self.commands: zmq.Socket[Any] | None = None  # to the Requestor: made anew for each of its processes
        self.env = env or {}
        self.started = time.monotonic()
        self.bad_beats = Tally()
        self.bad_control = Tally()
        self.late_turns = 0
        self.longest_late = 0.0
        interval = config.get("maestro.heartbeat_interval")
        self.stop_grace: float = config.get("maestro.stop_grace")
        args = ["--data-dir", str(config.data_dir), "--heartbeat", heartbeat_endpoint(self.run_dir)]
        self.services = {
            name: Supervised(Child(name, module, args, config.data_dir / "logs" / f"{name}.out"),
                             RestartPolicy(interval=interval))
            for name, module in SERVICES.items()
        }
        self.collector = PlayerCollector(self, config.state_db, lambda: bool(config.get("metrics.library_label")))
        self.metrics: MetricsEndpoint | None = None
        self.metrics_problem = ""
        self.running = True  # False once a shutdown is asked: the loop ends when every service is OFF

    # -- metrics ------------------------------------------------------------------
    def service_views(self) -> list[ServiceView]:
        """For the metrics collector, from any thread: values only, each read once."""
        own = {"bad_heartbeats": self.bad_beats.total, "bad_control_messages": self.bad_control.total,
               "late_turns": self.late_turns}
        views = [ServiceView("maestro", True, 0, own)]
        for name, sup in self.services.items():
            views.append(ServiceView(name, sup.policy.state is ServiceState.RUNNING, sup.policy.restarts,
                                     sup.counters))
        return views

    def metrics_text(self) -> str:
        return exposition(self.collector)

    def _serve_metrics(self) -> None:
        bind = self.config.get("metrics.bind")
        if not bind:
            return
        try:
            self.metrics = MetricsEndpoint(self.ctx, bind, self.collector)
        except (zmq.ZMQError, InvalidEndpoint) as exc:
            self.metrics_problem = f"metrics not served on {bind}: {exc}"
            log.error("metrics_unavailable", bind=bind, error=str(exc),
                      hint="choose a free address with `emma settings set metrics.bind HOST:PORT`")
            return
        log.info("metrics_serving", url=self.metrics.url)
        metrics_url_file(self.run_dir).write_text(self.metrics.url)

    # -- Supervisor protocol (used by ControlLogic) --------------------------------
    def statuses(self, now: float) -> list[control_pb2.ServiceStatus]:
        out = [control_pb2.ServiceStatus(name="maestro", state=control_pb2.RUNNING, pid=os.getpid(),
                                         uptime=now - self.started, heartbeat_age=0.0, detail=self._own_detail())]
        for name, sup in self.services.items():
            p = sup.policy
            out.append(control_pb2.ServiceStatus(
                name=name, state=control_pb2.ServiceState.Value(p.state.value),
                pid=sup.child.pid if p.ending or p.state in LIVE else 0,
                uptime=p.uptime(now), restarts=p.restarts, heartbeat_age=p.heartbeat_age(now),
                detail=self._detail(sup),
            ))
        return out

    @staticmethod
    def _detail(sup: Supervised) -> str:
        """What the running child says of itself (unless just "running"), and why it last failed."""
        said = ""
        if sup.last is not None and sup.policy.state is ServiceState.RUNNING:
            said = sup.last.state[:DETAIL_CHARS]
        failure = sup.policy.last_reason
        parts = [said if said != "running" else "", f"last failure: {failure}" if failure else ""]
        return "; ".join(part for part in parts if part)

    def _own_detail(self) -> str:
        """What the Maestro weathered: frames it dropped, turns it came late to."""
        parts = [self.metrics_problem,
                 f"dropped {self.bad_beats.total} bad heartbeat frames" if self.bad_beats.total else "",
                 f"dropped {self.bad_control.total} bad control messages" if self.bad_control.total else "",
                 f"{self.late_turns} late turns (longest {self.longest_late:.2f}s)" if self.late_turns else ""]
        return "; ".join(part for part in parts if part)

    def start_service(self, name: str, now: float) -> str:
        sup = self._service(name)
        if not self.running:
            return f"{name} not started: the player is shutting down"
        if not sup.policy.start_requested():
            return f"{name} is already {sup.policy.state.value}"
        self._spawn(name, sup, now)
        return f"started {name}"

    def stop_service(self, name: str, now: float) -> str:
        """Begin a stop and answer at once: STOPPING, then OFF (``ControlClient.stop_service`` waits for OFF)."""
        sup = self._service(name)
        self._apply(name, sup, sup.policy.stop_requested(now, self.stop_grace))
        if sup.policy.state is ServiceState.STOPPING:
            return f"stopping {name}"
        return f"stopped {name}"

    def request_shutdown(self) -> None:
        self.running = False

    def peers_of(self, library_id: str) -> int:
        return self.services[rundir.REQUESTOR].counters.get(peers_counter(library_id), 0)

    def stalled_of(self, library_id: str) -> int:
        return self.services[rundir.REQUESTOR].counters.get(stalled_counter(library_id), 0)

    def refused_of(self, library_id: str) -> int:
        return self.services[rundir.REQUESTOR].counters.get(refused_counter(library_id), 0)

    def hub_of(self, library_id: str) -> int:
        return self.services["requestor"].counters.get(hub_counter(library_id), 0)

    def _service(self, name: str) -> Supervised:
        if name not in self.services:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no service {name!r}; services: {', '.join(self.services)}")
        return self.services[name]

    # -- supervision -------------------------------------------------------------------
    def _spawn(self, name: str, sup: Supervised, now: float) -> None:
        if name == rundir.REQUESTOR:
            self._answer(self.forwarder.abandon("restarted"))
            self._command_socket()
        pid = sup.child.spawn(self.env)
        sup.last_words = ""
        sup.policy.spawned(now)
        log.info("service_spawned", service=name, pid=pid, restarts=sup.policy.restarts)

    def _apply(self, name: str, sup: Supervised, decision: Decision) -> None:
        """Do what the policy decided: log a failure or the end of a stop, signal or spawn."""
        if decision.failure:
            self._failed(name, sup)
        if decision.stopped is not None:
            log.info("service_stopped", service=name, ending=decision.stopped.value)
        if decision.action is Action.TERMINATE:
            sup.child.terminate()
        elif decision.action is Action.KILL:
            log.warning("service_killed", service=name, pid=sup.child.pid, state=sup.policy.state.value,
                        hint=f"it outlived its grace after SIGTERM; see logs/{name}.out for why it did not exit")
            sup.child.kill()
        elif decision.action is Action.SPAWN:
            self._spawn(name, sup, time.monotonic())

    def _failed(self, name: str, sup: Supervised) -> None:
        """Log the failure the policy just decided, with the child's last words if it said any."""
        if sup.last_words:
            self._heard_last_words(sup, sup.last_words)
        reason = sup.policy.last_reason
        if sup.policy.state is ServiceState.FATAL:
            log.error("service_fatal", service=name, reason=reason, failures=len(sup.policy.failures),
                      hint=f"fix the cause (see logs/{name}.out), then `emma services --start {name}`")
        else:
            log.warning("service_failed", service=name, reason=reason, retry_in=round(sup.policy.backoff, 3))

    def _pace(self, now: float) -> None:
        """Start a turn: if the Maestro came late to it, no child's silence since counts as a hang."""
        late = max(sup.policy.turn(now) for sup in self.services.values())
        if late:
            self.late_turns += 1
            self.longest_late = max(self.longest_late, late)
            log.warning("maestro_behind", seconds=round(late, 3),
                        hint="the Maestro was starved or busy; hang clocks restarted, no child is blamed")

    def _heartbeats(self) -> None:
        """Read at most HEARTBEAT_BATCH frames, timing each beat when it is read."""
        for _ in range(HEARTBEAT_BATCH):
            try:
                frame = self.beats.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            now = time.monotonic()
            beat = control_pb2.Heartbeat()
            try:
                beat.ParseFromString(frame)
            except DecodeError:
                beat.Clear()
            sup = self.services.get(beat.service)
            if sup is None or beat.pid == 0 or beat.pid != sup.child.pid:
                self._dropped(self.bad_beats, "bad_heartbeats", now, size=len(frame))
                continue
            if beat.state.startswith(LAST_WORDS):
                self._heard_last_words(sup, beat.state)
                continue
            if sup.policy.ending:
                continue
            sup.policy.beat(now)
            sup.last = beat
            sup.counters = {c.name: c.value for c in beat.counters}

    @staticmethod
    def _heard_last_words(sup: Supervised, words: str) -> None:
        """A crashing child said why: add it to its failure, whether the exit was seen before or after."""
        sup.last_words = words[:DETAIL_CHARS]
        if sup.policy.state in (ServiceState.BACKOFF, ServiceState.FATAL) and sup.last_words not in (
                sup.policy.last_reason):
            sup.policy.last_reason = f"{sup.policy.last_reason} ({sup.last_words})"

    def _dropped(self, tally: Tally, event: str, now: float, **fields: Any) -> None:
        self._report(tally, event, tally.add(now), **fields)

    @staticmethod
    def _report(tally: Tally, event: str, count: int, **fields: Any) -> None:
        if count:
            log.warning(event, dropped=count, total=tally.total, logged_every=LOG_EVERY, **fields,
                        hint="something other than this player's services writes to the sockets in run/")

    def _control(self) -> None:
        """Answer at most CONTROL_BATCH requests; malformed ones get an error reply."""
        for _ in range(CONTROL_BATCH):
            try:
                frames = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            now = time.monotonic()
            if len(frames) < 2:
                self._dropped(self.bad_control, "bad_control_messages", now, frames=len(frames))
                continue
            envelope, body = tuple(frames[:-1]), frames[-1]
            try:
                reply = self.logic.handle(body, now)
            except Exception:
                log.exception("control_handler_failed")
                failure = ProtocolError(ErrorCode.INTERNAL, "internal error in the Maestro; see logs/errors.log")
                reply = control_pb2.ControlReply(version=CONTROL.current, error=failure.to_pb()).SerializeToString()
            if isinstance(reply, Forward):
                self._forward(envelope, reply, now)
            else:
                self.control.send_multipart([*envelope, reply])

    # -- requests the Requestor answers -----------------------------------------------------
    def _forward(self, envelope: tuple[bytes, ...], forward: Forward, now: float) -> None:
        """Hand the request to the Requestor (its answer comes back in ``_command_replies``), or answer at once."""
        command, answer = self.forwarder.submit(envelope, forward.request, now,
                                                self.services[rundir.REQUESTOR].policy.state)
        if answer is not None:
            self._answer([answer])
            return
        try:
            if self.commands is None:  # made when the Requestor is spawned, so never None while it is LIVE
                raise zmq.Again
            self.commands.send(command, zmq.NOBLOCK)
        except zmq.Again:  # its queue is full: it does not read
            self._answer(self.forwarder.abandon("does not take requests (its queue is full)"))

    def _command_socket(self) -> None:
        """A fresh socket to the Requestor for each of its processes: a request queued for the one that is gone is
        dropped with its socket (its CLI client was answered), never carried out later by the next one."""
        if self.commands is not None:
            self.poller.unregister(self.commands)
            self.commands.close(linger=0)
        self.commands = self.ctx.socket(zmq.DEALER)
        self.commands.setsockopt(zmq.MAXMSGSIZE, MAX_CONTROL_BYTES)
        self.commands.setsockopt(zmq.LINGER, 0)
        self.commands.connect(rundir.requestor_endpoint(self.run_dir))
        self.poller.register(self.commands, zmq.POLLIN)

    def _command_replies(self, commands: zmq.Socket[Any]) -> None:
        for _ in range(CONTROL_BATCH):
            try:
                frame = commands.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            answer = self.forwarder.answer(frame)
            if answer is None:
                log.warning("stray_command_reply", size=len(frame), stray=self.forwarder.stray,
                            hint="a late answer (its request was answered with a timeout), or not from the Requestor")
            else:
                self._answer([answer])

    def _forwarded_turn(self, now: float) -> None:
        """Answer the requests the Requestor cannot answer any more (stopped) or did not answer in time."""
        if self.forwarder.pending and self.services[rundir.REQUESTOR].policy.state not in LIVE:
            self._answer(self.forwarder.abandon(f"stopped ({self.services[rundir.REQUESTOR].policy.state.value})"))
        self._answer(self.forwarder.expire(now))

    def _answer(self, answers: list[Answer]) -> None:
        for answer in answers:
            self.control.send_multipart([*answer.envelope, answer.reply])

    def run(self) -> None:
        now = time.monotonic()
        for name, sup in self.services.items():
            self._spawn(name, sup, now)
        log.info("maestro_started", pid=os.getpid(), data_dir=str(self.config.data_dir))
        self._serve_metrics()
        poller = self.poller
        poller.register(self.beats, zmq.POLLIN)
        poller.register(self.control, zmq.POLLIN)
        scrapes = set(self.metrics.sockets()) if self.metrics is not None else set()
        for sock in scrapes:
            poller.register(sock, zmq.POLLIN)
        stopping = False
        with Wakeup() as wakeup:
            if wakeup.fd is not None:
                poller.register(wakeup.fd, zmq.POLLIN)
            while not stopping or not self._all_off():
                events = dict(poller.poll(int(self._wait(time.monotonic()) * 1000)))
                if wakeup.fd in events:
                    wakeup.drain()
                stopping = self._turn(events, scrapes, stopping)
        self.shutdown()

    def _turn(self, events: dict[Any, int], scrapes: set[Any], stopping: bool) -> bool:
        """One loop turn on what ``poll`` returned; whether the Maestro is stopping."""
        if self.metrics is not None and scrapes.intersection(events):
            self.metrics.handle()
        if self.control in events:
            self._control()
        if self.commands is not None and self.commands in events:
            self._command_replies(self.commands)
        if not self.running and not stopping:
            stopping = True
            self._stop_all(time.monotonic())
        self._pace(time.monotonic())
        self._heartbeats()
        now = time.monotonic()
        for name, sup in self.services.items():
            status = sup.child.exited()
            if status == EXIT_UNUSABLE and sup.policy.state in LIVE:  # it cannot run with its settings: why
                self._heard_last_words(sup, unusable_reason(sup.child.log_path, name) or sup.last_words)
            cpu = sup.child.cpu_seconds() if sup.policy.state is ServiceState.STARTING else None  # slow or stuck?
            self._apply(name, sup, sup.policy.poll(now, status, hopeless=status == EXIT_UNUSABLE, cpu=cpu))
        self._forwarded_turn(now)
        self._report(self.bad_beats, "bad_heartbeats", self.bad_beats.due(now))
        self._report(self.bad_control, "bad_control_messages", self.bad_control.due(now))
        return stopping

    def _wait(self, now: float) -> float:
        """How long the loop may wait for news: TICK, or less when a forwarded request's time is up sooner."""
        deadline = self.forwarder.next_deadline()
        return TICK if deadline is None else min(TICK, max(0.0, deadline - now))

    def _stop_all(self, now: float) -> None:
        """Shutdown: every service told to stop at once; the loop runs on until all are OFF."""
        log.info("maestro_stopping", grace=self.stop_grace)
        for name, sup in self.services.items():
            self._apply(name, sup, sup.policy.stop_requested(now, self.stop_grace))

    def _all_off(self) -> bool:
        return all(sup.policy.state is ServiceState.OFF for sup in self.services.values())

    def stop(self, *_: object) -> None:
        self.running = False

    def shutdown(self) -> None:
        """Release what the Maestro holds, once every service is OFF (see ``run``)."""
        if self.metrics is not None:
            self.metrics.close()
            metrics_url_file(self.run_dir).unlink(missing_ok=True)
        self.state.close()
        self.ctx.destroy(linger=0)
        for leftover in rundir.MAESTRO_LEFTOVERS:
            (self.run_dir / leftover).unlink(missing_ok=True)
        log.info("maestro_stopped", pid=os.getpid())
        self.lock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emma-maestro", description="Run a player's Maestro (supervisor).")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    data_dir = (args.data_dir or config_mod.default_data_dir()).absolute()
    config = config_mod.load(data_dir)
    config.ensure_dirs()
    setup_logging(data_dir, process="maestro", console_level=logging.CRITICAL)  # the files have it all
    try:
        maestro = Maestro(config)
    except (AlreadyRunning, StateError) as exc:
        print(f"error: {exc}", flush=True)
        return 2
    signal.signal(signal.SIGTERM, maestro.stop)
    signal.signal(signal.SIGINT, maestro.stop)
    print(f"maestro running for {data_dir} (pid {os.getpid()})", flush=True)
    maestro.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
