"""The CLI's side of the Maestro control socket (ipc in ``<data>/run/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zmq
from google.protobuf.message import DecodeError

from services.wire.pb import common_pb2, control_pb2

CONTROL_VERSION = 1


def control_endpoint(run_dir: Path) -> str:
    return f"ipc://{run_dir / 'control.sock'}"


def heartbeat_endpoint(run_dir: Path) -> str:
    return f"ipc://{run_dir / 'heartbeat.sock'}"


def metrics_url_file(run_dir: Path) -> Path:
    """Where a Maestro serving /metrics writes its URL (the port may have been chosen by the system)."""
    return run_dir / "metrics.url"


class MaestroNotRunning(RuntimeError):
    """No Maestro answers for this data directory."""


class ControlError(RuntimeError):
    """The Maestro answered with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ControlClient:
    """One request at a time to the Maestro; raises MaestroNotRunning when nobody answers."""

    def __init__(self, run_dir: Path, timeout: float = 3.0) -> None:
        self.run_dir = run_dir
        self.timeout = timeout

    def call(self, **body: Any) -> control_pb2.ControlReply:
        if not (self.run_dir / "control.sock").exists():
            raise MaestroNotRunning(f"no player runs for {self.run_dir.parent}")
        ctx: zmq.Context[Any] = zmq.Context.instance()
        socket = ctx.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        try:
            socket.connect(control_endpoint(self.run_dir))
            request = control_pb2.ControlRequest(version=CONTROL_VERSION, **body)
            socket.send_multipart([b"", request.SerializeToString()])
            if not socket.poll(int(self.timeout * 1000)):
                raise MaestroNotRunning(f"the player of {self.run_dir.parent} does not answer")
            frames = socket.recv_multipart()
        finally:
            socket.close(linger=0)
        reply = control_pb2.ControlReply()
        try:
            reply.ParseFromString(frames[-1])
        except DecodeError as exc:
            raise ControlError("MALFORMED", "the Maestro sent an unreadable reply") from exc
        if reply.WhichOneof("body") == "error":
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
        return self.call(add=control_pb2.AddLibrary(path=str(path), only=list(only), to=to, on_complete=on_complete,
                                                    hubs=list(hubs))).ok.message

    def library(self, library_id: str, action: control_pb2.LibraryAction.Action.ValueType) -> str:
        return self.call(library=control_pb2.LibraryAction(library_id=library_id, action=action)).ok.message

    def set_rates(self, upload: int, download: int) -> str:
        return self.call(rates=control_pb2.SetRates(upload_rate=upload, download_rate=download)).ok.message

    def service(self, name: str, start: bool) -> str:
        return self.call(service=control_pb2.ServiceAction(service=name, start=start)).ok.message

    def shutdown(self) -> str:
        return self.call(shutdown=control_pb2.Shutdown()).ok.message
