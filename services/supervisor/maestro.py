"""The Maestro: a player's supervisor process.

It spawns the Distributor and the Requestor as child processes, takes their
heartbeats on a PULL socket, and applies each service's RestartPolicy: an
exit or ``liveness`` missed beats is a failure (a hung child gets SIGTERM,
then SIGKILL after ``HANG_GRACE``), followed by a respawn after backoff, or
FATAL past the restart intensity. It answers the CLI on a ROUTER control
socket. It does no transfer work itself. One Maestro per data directory,
enforced with an exclusive lock on ``<data>/run/maestro.lock``.

Run: ``python -m services.supervisor.maestro --data-dir D``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zmq
from google.protobuf.message import DecodeError

from services.peer.requestor_logic import peers_counter, stalled_counter
from services.peer.state import State
from services.runtime import config as config_mod
from services.runtime.logs import get_logger, setup_logging
from services.supervisor.child import Child
from services.supervisor.control_client import control_endpoint, heartbeat_endpoint
from services.supervisor.control_logic import MAX_CONTROL_BYTES, ControlLogic
from services.supervisor.policy import RestartPolicy, ServiceState
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.pb import control_pb2

log = get_logger("services")
SERVICES = {"distributor": "services.peer.distributor", "requestor": "services.peer.requestor"}
HANG_GRACE = 0.3
TICK = 0.02


class AlreadyRunning(RuntimeError):
    """Another Maestro holds this data directory."""


@dataclass
class Supervised:
    child: Child
    policy: RestartPolicy
    last: control_pb2.Heartbeat | None = None
    dying: bool = False
    want_off: bool = False
    counters: dict[str, int] = field(default_factory=dict)


def acquire_lock(run_dir: Path) -> IO[str]:
    """Hold ``maestro.lock`` for the life of the process, or raise AlreadyRunning."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / "maestro.lock", "a+")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        pid = (run_dir / "maestro.pid").read_text().strip() if (run_dir / "maestro.pid").exists() else "?"
        raise AlreadyRunning(f"a player already runs for {run_dir.parent} (pid {pid}); stop it with `emma peer stop`"
                             ) from exc
    return handle


class Maestro:
    def __init__(self, config: config_mod.Config, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.run_dir = config.run_dir
        self.lock = acquire_lock(self.run_dir)
        (self.run_dir / "maestro.pid").write_text(str(os.getpid()))
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.beats = self.ctx.socket(zmq.PULL)
        self.beats.setsockopt(zmq.MAXMSGSIZE, 64 * 1024)
        self.beats.setsockopt(zmq.LINGER, 0)
        self.beats.bind(heartbeat_endpoint(self.run_dir))
        self.control = self.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.MAXMSGSIZE, MAX_CONTROL_BYTES)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.bind(control_endpoint(self.run_dir))
        self.state = State(config.state_db)
        self.logic = ControlLogic(self, config, self.state)
        self.env = env or {}
        self.started = time.monotonic()
        interval = config.get("maestro.heartbeat_interval")
        args = ["--data-dir", str(config.data_dir), "--heartbeat", heartbeat_endpoint(self.run_dir)]
        self.services = {
            name: Supervised(Child(name, module, args, config.data_dir / "logs" / f"{name}.out"),
                             RestartPolicy(interval=interval))
            for name, module in SERVICES.items()
        }
        self.running = True

    # -- Supervisor protocol (used by ControlLogic) --------------------------------
    def statuses(self, now: float) -> list[control_pb2.ServiceStatus]:
        out = [control_pb2.ServiceStatus(name="maestro", state=control_pb2.RUNNING, pid=os.getpid(),
                                         uptime=now - self.started, heartbeat_age=0.0)]
        for name, sup in self.services.items():
            p = sup.policy
            out.append(control_pb2.ServiceStatus(
                name=name, state=control_pb2.ServiceState.Value(p.state.value),
                pid=sup.child.pid if p.state in (ServiceState.STARTING, ServiceState.RUNNING) else 0,
                uptime=p.uptime(now), restarts=p.restarts, heartbeat_age=p.heartbeat_age(now),
                detail=self._detail(sup),
            ))
        return out

    @staticmethod
    def _detail(sup: Supervised) -> str:
        """What the running child says of itself (unless just "running"), and why it last failed."""
        said = sup.last.state if sup.last is not None and sup.policy.state is ServiceState.RUNNING else ""
        failure = sup.policy.last_reason
        parts = [said if said != "running" else "", f"last failure: {failure}" if failure else ""]
        return "; ".join(part for part in parts if part)

    def start_service(self, name: str, now: float) -> str:
        sup = self._service(name)
        if not sup.policy.start_requested():
            return f"{name} is already {sup.policy.state.value}"
        sup.want_off = False
        self._spawn(name, sup, now)
        return f"started {name}"

    def stop_service(self, name: str, now: float) -> str:
        sup = self._service(name)
        sup.want_off = True
        ending = sup.child.stop(grace=5.0)
        sup.policy.stopped()
        log.info("service_stopped", service=name, ending=ending.value)
        return f"stopped {name} ({ending.value})"

    def request_shutdown(self) -> None:
        self.running = False

    def peers_of(self, library_id: str) -> int:
        return self.services["requestor"].counters.get(peers_counter(library_id), 0)

    def stalled_of(self, library_id: str) -> int:
        return self.services["requestor"].counters.get(stalled_counter(library_id), 0)

    def _service(self, name: str) -> Supervised:
        if name not in self.services:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no service {name!r}; services: {', '.join(self.services)}")
        return self.services[name]

    # -- supervision -------------------------------------------------------------------
    def _spawn(self, name: str, sup: Supervised, now: float) -> None:
        pid = sup.child.spawn(self.env)
        sup.dying = False
        sup.policy.spawned(now)
        log.info("service_spawned", service=name, pid=pid, restarts=sup.policy.restarts)

    def _check(self, name: str, sup: Supervised, now: float) -> None:
        policy = sup.policy
        status = sup.child.exited()
        if sup.dying:
            if status is None and sup.child.term_sent_at is not None and now - sup.child.term_sent_at > HANG_GRACE:
                sup.child.kill()
            if status is None:
                return
            sup.dying = False
        elif policy.state in (ServiceState.STARTING, ServiceState.RUNNING):
            if status is not None:
                self._failed(name, sup, now, f"exited with status {status}")
            elif policy.hung(now):
                sup.child.terminate(now)
                sup.dying = True
                self._failed(name, sup, now, f"hung: no heartbeat for {policy.heartbeat_age(now):.2f}s")
                return
        if policy.due(now) and not sup.dying:
            policy.restarts += 1
            self._spawn(name, sup, now)

    def _failed(self, name: str, sup: Supervised, now: float, reason: str) -> None:
        state = sup.policy.failed(now, reason)
        if state is ServiceState.FATAL:
            log.error("service_fatal", service=name, reason=reason, failures=len(sup.policy.failures),
                      hint=f"fix the cause (see logs/{name}.out), then `emma services --start {name}`")
        else:
            log.warning("service_failed", service=name, reason=reason, retry_in=round(sup.policy.backoff, 3))

    def _heartbeats(self, now: float) -> None:
        while True:
            try:
                frame = self.beats.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            beat = control_pb2.Heartbeat()
            try:
                beat.ParseFromString(frame)
            except DecodeError:
                log.warning("bad_heartbeat", size=len(frame))
                continue
            sup = self.services.get(beat.service)
            if sup is None or beat.pid != sup.child.pid or sup.dying:
                continue
            sup.policy.beat(now)
            sup.last = beat
            sup.counters = {c.name: c.value for c in beat.counters}

    def _control(self, now: float) -> None:
        while True:
            try:
                frames = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                log.warning("bad_control_message", frames=len(frames))
                continue
            envelope, body = frames[:-1], frames[-1]
            try:
                reply = self.logic.handle(body, now)
            except Exception:
                log.exception("control_handler_failed")
                failure = ProtocolError(ErrorCode.INTERNAL, "internal error in the Maestro; see logs/errors.log")
                reply = control_pb2.ControlReply(version=1, error=failure.to_pb()).SerializeToString()
            self.control.send_multipart([*envelope, reply])

    def run(self) -> None:
        now = time.monotonic()
        for name, sup in self.services.items():
            self._spawn(name, sup, now)
        log.info("maestro_started", pid=os.getpid(), data_dir=str(self.config.data_dir))
        poller = zmq.Poller()
        poller.register(self.beats, zmq.POLLIN)
        poller.register(self.control, zmq.POLLIN)
        while self.running:
            events = dict(poller.poll(int(TICK * 1000)))
            now = time.monotonic()
            if self.beats in events:
                self._heartbeats(now)
            if self.control in events:
                self._control(now)
            for name, sup in self.services.items():
                if not sup.want_off:
                    self._check(name, sup, now)
        self.shutdown()

    def stop(self, *_: object) -> None:
        self.running = False

    def shutdown(self) -> None:
        for name, sup in self.services.items():
            ending = sup.child.stop(grace=8.0)
            log.info("service_stopped", service=name, ending=ending.value)
        self.state.close()
        self.ctx.destroy(linger=0)
        for leftover in ("control.sock", "heartbeat.sock", "maestro.pid"):
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
    setup_logging(data_dir, process="maestro")
    try:
        maestro = Maestro(config)
    except AlreadyRunning as exc:
        print(f"error: {exc}", flush=True)
        return 2
    signal.signal(signal.SIGTERM, maestro.stop)
    signal.signal(signal.SIGINT, maestro.stop)
    print(f"maestro running for {data_dir} (pid {os.getpid()})", flush=True)
    maestro.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
