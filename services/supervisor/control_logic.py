"""What the Maestro answers on its control socket: plain logic, no sockets.

``ControlLogic.handle(frame, now)`` decodes a ControlRequest, acts through the
``Supervisor`` protocol (service states, start/stop), reads state.db (the
downloads view) and writes config.toml (rates), and returns the encoded
ControlReply -- or, for a request that changes the player's libraries (get,
pause, resume, remove, share), a ``Forward``: the Maestro hands it to the
Requestor, which alone writes state.db's libraries and libs/ while it runs
(``forward.py``, ``services/peer/commands.py``). Malformed requests get an
error reply; nothing raised here stops the Maestro.

Nothing in a request is trusted: a setting changed here goes through the same
``Config.set`` validator as ``emma settings set``, so a value refused there is
refused here and never saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.peer.commands import MAX_COMMAND_BYTES, decode_control
from services.peer.library import LibraryCache, LibraryError
from services.peer.requestor_logic import HUB_NAMED, HUB_NAMED_NOBODY
from services.peer.state import LibraryRecord, State, Status
from services.runtime import config as config_mod
from services.supervisor import download_view as view
from services.supervisor.download_view import Live
from services.supervisor.forward import FORWARDED
from services.wire import names
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.pb import control_pb2
from services.wire.versions import CONTROL

MAX_CONTROL_BYTES = MAX_COMMAND_BYTES


@dataclass(frozen=True)
class Forward:
    """A request for the Requestor to answer (see ``forward.Forwarder``)."""

    request: control_pb2.ControlRequest


class Supervisor(Protocol):
    def statuses(self, now: float) -> list[control_pb2.ServiceStatus]: ...

    def start_service(self, name: str, now: float) -> str: ...

    def stop_service(self, name: str, now: float) -> str: ...

    def request_shutdown(self) -> None: ...

    def peers_of(self, library_id: str) -> int: ...

    def stalled_of(self, library_id: str) -> int: ...

    def refused_of(self, library_id: str) -> int: ...

    def hub_of(self, library_id: str) -> int: ...

    def metrics_text(self) -> str: ...


class ControlLogic:
    def __init__(self, supervisor: Supervisor, config: config_mod.Config, state: State) -> None:
        self.supervisor = supervisor
        self.config = config
        self.state = state
        self.meter = view.RateMeter()
        self.libraries = LibraryCache()
        self.selected: dict[tuple[str, tuple[str, ...]], tuple[int, int]] = {}  # (id, globs) -> (files, selected)

    def handle(self, frame: bytes, now: float) -> bytes | Forward:
        """The encoded reply, or the request to forward to the Requestor."""
        try:
            reply = self._dispatch(_decode(frame), now)
        except ProtocolError as exc:
            reply = control_pb2.ControlReply(error=exc.to_pb())
        if isinstance(reply, Forward):
            return reply
        reply.version = CONTROL.current
        return reply.SerializeToString()

    def _dispatch(self, request: control_pb2.ControlRequest, now: float) -> control_pb2.ControlReply | Forward:
        kind = request.WhichOneof("body")
        if kind == "services":
            return control_pb2.ControlReply(services=control_pb2.ServicesReply(
                services=self.supervisor.statuses(now)))
        if kind == "downloads":
            return control_pb2.ControlReply(downloads=control_pb2.DownloadsReply(downloads=self.downloads(now)))
        if kind in FORWARDED:
            return Forward(request)
        if kind == "rates":
            return _ok(self.set_rates(request.rates))
        if kind == "service":
            action = self.supervisor.start_service if request.service.start else self.supervisor.stop_service
            return _ok(action(request.service.service, now))
        if kind == "shutdown":
            self.supervisor.request_shutdown()
            return _ok("shutting down")
        if kind == "metrics":
            return control_pb2.ControlReply(metrics=control_pb2.MetricsReply(text=self.supervisor.metrics_text()))
        raise ProtocolError(ErrorCode.UNKNOWN_REQUEST, "control request has no body")

    def downloads(self, now: float) -> list[control_pb2.Download]:
        records = self.state.all()
        self.meter.sample(records, now)
        out = []
        for record in records:
            live = self._live(record) if record.status is Status.DOWNLOADING else Live()
            shown = view.state_word(record, live, self._hubs(record), mono=now)
            down, up = view.current_rates(record.status, *self.meter.of(record.id))
            have = len(record.have)
            files, selected = self._files(record)
            out.append(control_pb2.Download(
                library_id=record.id, name=record.name, size=record.size, books_total=record.books,
                books_have=have, download_rate=down, upload_rate=up,
                peers=self.supervisor.peers_of(record.id), state=names.download_state_value(shown.state),
                path=str(record.stuff_path),
                detail=shown.detail, files_total=files, files_selected=selected, uploaded=record.uploaded,
                downloaded=record.downloaded, ratio=view.ratio(record.uploaded, record.size),
                eta=view.eta(record.size, record.books, have, down), since=shown.since,
            ))
        return out

    def _live(self, record: LibraryRecord) -> Live:
        hub = self.supervisor.hub_of(record.id)
        return Live(peers=self.supervisor.peers_of(record.id), stalled=self.supervisor.stalled_of(record.id),
                    refused=self.supervisor.refused_of(record.id), hub_answered=hub in (HUB_NAMED, HUB_NAMED_NOBODY),
                    hub_named_nobody=hub == HUB_NAMED_NOBODY,
                    hub_down_since=hub / 1000 if hub > HUB_NAMED_NOBODY else 0.0)

    def _hubs(self, record: LibraryRecord) -> tuple[str, ...]:
        """The hubs the download asks (those of its .lib in libs/); () if it cannot be read."""
        try:
            return self.libraries.read(record.lib_path).hubs
        except LibraryError:
            return ()

    def _files(self, record: LibraryRecord) -> tuple[int, int]:
        """(files in the library, files selected to fetch); (1, 1) for a single file, (0, 0) if unreadable."""
        key = (record.id, record.only)
        if key not in self.selected:
            try:
                tree = self.libraries.read(record.lib_path).tree
            except LibraryError:
                return 0, 0
            self.selected[key] = (1, 1) if tree is None else (len(tree), len(tree.select(record.only)))
        return self.selected[key]

    def set_rates(self, rates: control_pb2.SetRates) -> str:
        """Both rates validated as `emma settings set` does, then saved together (or neither)."""
        try:
            # From disk, not the copy loaded at start: saving that would undo `emma settings set` since.
            fresh = config_mod.load(self.config.data_dir)
        except config_mod.ConfigError as exc:
            raise ProtocolError(ErrorCode.INVALID_ARGUMENT, str(exc)) from exc
        for key, value in (("limits.upload_rate", rates.upload_rate), ("limits.download_rate", rates.download_rate)):
            try:
                fresh.set(key, value)
            except config_mod.ConfigError as exc:
                raise ProtocolError(ErrorCode.INVALID_ARGUMENT, f"{key}: {exc}; nothing was changed") from exc
        fresh.save()
        self.config.values = fresh.values
        return f"upload {rates.upload_rate or 'unlimited'} B/s, download {rates.download_rate or 'unlimited'} B/s"


def _ok(message: str) -> control_pb2.ControlReply:
    return control_pb2.ControlReply(ok=control_pb2.Ok(message=message))


def _decode(frame: bytes) -> control_pb2.ControlRequest:
    return decode_control(control_pb2.ControlRequest(), frame, "control request")
