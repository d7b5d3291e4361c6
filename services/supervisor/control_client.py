"""The CLI's side of the Maestro control socket (ipc in ``<data>/run/``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import zmq
from google.protobuf.message import DecodeError

from services.runtime import rundir
from services.runtime.rundir import control_endpoint
from services.wire.pb import common_pb2, control_pb2
from services.wire.versions import CONTROL

STOP_MARGIN = 10.0  # ``stop_service`` waits the stop grace and this long for OFF (the SIGKILL comes at the grace)
FORWARD_MARGIN = 5.0  # a request the Maestro forwards to the Requestor is waited for its bound and this long


class MaestroNotRunning(RuntimeError):
    """No Maestro answers for this data directory; ``hint``, when set, says what to do instead of starting one."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class ControlError(RuntimeError):
    """The Maestro answered with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _holds_lock(pid: int, run_dir: Path) -> bool:
    """Whether ``pid`` holds ``run_dir``'s Maestro lock file open: the Maestro of that data folder, detached or
    in the foreground, and not a process (another player's, maybe) that took the number of one gone."""
    lock = os.path.realpath(rundir.lock_file(run_dir))  # as /proc shows it: links resolved
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == lock:
                return True
        except OSError:
            continue
    return False


class ControlClient:
    """One request at a time to the Maestro; raises MaestroNotRunning when nobody answers."""

    def __init__(self, run_dir: Path, timeout: float = 3.0) -> None:
        self.run_dir = run_dir
        self.timeout = timeout

    def _silent(self) -> MaestroNotRunning:
        """Nobody answered: no player, or one that runs and is stuck (stopped, or its loop wedged)."""
        pid = rundir.maestro_pid(self.run_dir)
        if pid and _holds_lock(pid, self.run_dir):
            return MaestroNotRunning(
                f"the player of {self.run_dir.parent} (pid {pid}) runs but does not answer",
                hint=f"it is busy or stopped: try again in a moment, or end it with `kill {pid}` and start it again")
        return MaestroNotRunning(f"the player of {self.run_dir.parent} does not answer")

    def call(self, timeout: float | None = None, **body: Any) -> control_pb2.ControlReply:
        """Ask and wait for the answer, up to ``timeout`` (the client's own, by default)."""
        if not rundir.control_socket(self.run_dir).exists():
            raise MaestroNotRunning(f"no player runs for {self.run_dir.parent}")
        ctx: zmq.Context[Any] = zmq.Context.instance()
        socket = ctx.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        try:
            socket.connect(control_endpoint(self.run_dir))
            request = control_pb2.ControlRequest(version=CONTROL.current, **body)
            socket.send_multipart([b"", request.SerializeToString()])
            if not socket.poll(int((timeout or self.timeout) * 1000)):
                raise self._silent()
            frames = socket.recv_multipart()
        finally:
            socket.close(linger=0)
        reply = control_pb2.ControlReply()
        try:
            reply.ParseFromString(frames[-1])
        except DecodeError as exc:
            raise ControlError("MALFORMED", "the Maestro sent an unreadable reply") from exc
        if reply.WhichOneof("body") == "error":
            if reply.error.code == common_pb2.UNKNOWN_REQUEST and reply.version < CONTROL.current:
                raise ControlError("UNKNOWN_REQUEST", f"the running player is older than this emma (control version "
                                                      f"{reply.version}, this emma's {CONTROL.current}) and cannot do "
                                                      f"this; restart it: `emma peer stop`, then `emma peer --detach`")
            raise ControlError(common_pb2.ErrorCode.Name(reply.error.code), reply.error.message)
        return reply

    def services(self) -> list[control_pb2.ServiceStatus]:
        return list(self.call(services=control_pb2.ListServices()).services.services)

    def metrics(self) -> str:
        """The player's metrics in the Prometheus text format (what its /metrics serves)."""
        return self.call(metrics=control_pb2.MetricsRequest()).metrics.text

    def downloads(self) -> list[control_pb2.Download]:
        return list(self.call(downloads=control_pb2.ListDownloads()).downloads.downloads)

    def add(self, path: Path, only: tuple[str, ...] = (), to: str = "", on_complete: str = "",
            hubs: tuple[str, ...] = ()) -> str:
        return self._forwarded(add=control_pb2.AddLibrary(path=str(path), only=list(only), to=to,
                                                          on_complete=on_complete, hubs=list(hubs)))

    def library(self, library_id: str, action: control_pb2.LibraryAction.Action.ValueType) -> str:
        return self._forwarded(library=control_pb2.LibraryAction(library_id=library_id, action=action))

    def seed(self, lib_path: Path, stuff_path: Path) -> str:
        """`emma share` with a player running: it records the library (written at ``lib_path``) as seeding."""
        return self._forwarded(seed=control_pb2.SeedLibrary(path=str(lib_path), stuff_path=str(stuff_path)))

    def _forwarded(self, **body: Any) -> str:
        """A request the Maestro forwards to the Requestor: waited for as long as the Maestro waits, and more."""
        from services.supervisor.forward import FORWARD_SECONDS  # the Maestro's side: not for `emma downloads`

        return self.call(timeout=max(self.timeout, FORWARD_SECONDS + FORWARD_MARGIN), **body).ok.message

    def set_rates(self, upload: int, download: int) -> str:
        return self.call(rates=control_pb2.SetRates(upload_rate=upload, download_rate=download)).ok.message

    def service(self, name: str, start: bool) -> str:
        """Start or stop one service; a stop is only begun (STOPPING): ``stop_service`` waits for OFF."""
        return self.call(service=control_pb2.ServiceAction(service=name, start=start)).ok.message

    def stop_service(self, name: str, grace: float) -> str:
        """Stop one service and return once the Maestro reports it OFF (it answers other requests meanwhile).

        ``grace`` is the player's ``maestro.stop_grace``: past it (and STOP_MARGIN), ControlError."""
        said = self.service(name, False)
        wait = grace + STOP_MARGIN
        deadline = time.monotonic() + wait
        while (state := self.state_of(name)) != control_pb2.OFF:
            if time.monotonic() > deadline:
                raise ControlError("TIMEOUT", f"{name} is still {control_pb2.ServiceState.Name(state)} after "
                                   f"{wait:g} s; see logs/{name}.out and `emma services`")
            time.sleep(0.05)
        return said if said.startswith("stopped") else f"stopped {name}"

    def state_of(self, name: str) -> control_pb2.ServiceState.ValueType:
        for status in self.services():
            if status.name == name:
                return status.state
        raise ControlError("NOT_FOUND", f"the Maestro lists no service {name!r}")

    def shutdown(self) -> str:
        return self.call(shutdown=control_pb2.Shutdown()).ok.message
