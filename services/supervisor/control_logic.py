"""What the Maestro answers on its control socket: plain logic, no sockets.

``ControlLogic.handle(frame, now)`` decodes a ControlRequest, acts through the
``Supervisor`` protocol (service states, start/stop) and state.db/config, and
returns the encoded ControlReply. Library actions change state.db; the
Requestor and Distributor converge to it within a second. Malformed requests
get an error reply; nothing raised here stops the Maestro.

Nothing in a request is trusted: a path to add is read as a library would be
from anywhere (a regular file, capped, every field checked), and a setting
changed here goes through the same ``Config.set`` validator as ``emma
settings set``, so a value refused there is refused here and never saved.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from google.protobuf.message import DecodeError

from services.peer import catalog, hooks
from services.peer.library import Library, LibraryCache, LibraryError, library_file_name, read_library
from services.peer.requestor_logic import HUB_NAMED, HUB_NAMED_NOBODY
from services.peer.state import LibraryRecord, State, Status
from services.runtime import config as config_mod
from services.supervisor import download_view as view
from services.supervisor.download_view import Live
from services.wire import names
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.pb import control_pb2
from services.wire.versions import CONTROL

MAX_CONTROL_BYTES = 64 * 1024
# What `emma downloads` shows for each status a library has in state.db (stalled and refused come from the Requestor).
MAX_GLOBS = 64  # globs of one `emma get --only`
MAX_GLOB_CHARS = 1024


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

    def handle(self, frame: bytes, now: float) -> bytes:
        try:
            reply = self._dispatch(_decode(frame), now)
        except ProtocolError as exc:
            reply = control_pb2.ControlReply(error=exc.to_pb())
        reply.version = CONTROL.current
        return reply.SerializeToString()

    def _dispatch(self, request: control_pb2.ControlRequest, now: float) -> control_pb2.ControlReply:
        kind = request.WhichOneof("body")
        if kind == "services":
            return control_pb2.ControlReply(services=control_pb2.ServicesReply(
                services=self.supervisor.statuses(now)))
        if kind == "downloads":
            return control_pb2.ControlReply(downloads=control_pb2.DownloadsReply(downloads=self.downloads(now)))
        if kind == "add":
            body = request.add
            return _ok(self.add(Path(body.path), tuple(body.only), body.to, body.on_complete, tuple(body.hubs)))
        if kind == "library":
            return _ok(self.library_action(request.library))
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

    def add(self, path: Path, only: tuple[str, ...] = (), to: str = "", on_complete: str = "",
            hubs: tuple[str, ...] = ()) -> str:
        """Download the library at ``path`` (of a tree, the files ``only`` selects), into the folder ``to``, running
        ``on_complete`` when done, asking ``hubs`` instead of the library's own (`emma get --hub`)."""
        if not path.is_absolute():
            raise ProtocolError(ErrorCode.INVALID_ARGUMENT,
                                f"give the absolute path of the .lib file, not {str(path)[:80]!r}")
        try:
            library = read_library(path)
            if hubs:
                library = library.with_hubs(hubs)
        except LibraryError as exc:
            raise ProtocolError(ErrorCode.INVALID_ARGUMENT, str(exc)) from exc
        selected = _check_only(library, only)
        folder = _folder(to) if to else None
        if on_complete:
            try:
                hooks.parse(on_complete)
            except hooks.CommandError as exc:
                raise ProtocolError(ErrorCode.INVALID_ARGUMENT, f"--on-complete: {exc}") from exc
        existing = self.state.get(library.id_hex)
        if existing is not None:
            if on_complete and existing.status is not Status.SEEDING:
                self.state.set_on_complete(existing.id, on_complete)
            if hubs:
                catalog.import_library(self.config, library, path, changed=True)
                return (f"{library.id_hex} is already known ({_display_state(existing)}); it asks {', '.join(hubs)} "
                        f"from its next start (`emma pause` then `emma resume` it now)")
            if library.tree is None or not existing.only:
                return f"{library.id_hex} is already known ({_display_state(existing)})"
            return self._select_more(existing, library, only)
        if folder is not None or on_complete:
            # Recorded paused before its .lib lands in libs/, so the Requestor cannot take it from there first
            # (into the downloads folder, without the command); then set going.
            lib_path = self.config.libs_dir / library.file_name
            catalog.record_download(self.state, self.config, library, lib_path, only, folder, Status.PAUSED)
            self.state.set_on_complete(library.id_hex, on_complete)
            catalog.import_library(self.config, library, path, changed=bool(hubs))
            self.state.set_status(library.id_hex, Status.DOWNLOADING)
        else:
            target = catalog.import_library(self.config, library, path, changed=bool(hubs))
            catalog.record_download(self.state, self.config, library, target, only)
        chosen = f": {selected} of {len(library.tree)} files selected" if only and library.tree is not None else ""
        into = f" into {folder}" if folder is not None else ""
        return f"added {library.id_hex} ({library.name}){chosen}{into}"

    def _select_more(self, record: LibraryRecord, library: Library, only: tuple[str, ...]) -> str:
        """A known tree asked for again: its selection grows by ``only`` (none given: to every file)."""
        merged = tuple(sorted({*record.only, *only})) if only else ()
        count = len(library.tree.select(merged)) if library.tree is not None else 1
        total = len(library.tree) if library.tree is not None else 1
        if merged == record.only:
            return f"{library.id_hex} is already known ({_display_state(record)}, {count} of {total} files selected)"
        status = Status.DOWNLOADING if record.status is Status.SEEDING else record.status
        self.state.select(record.id, merged, status)
        return f"{library.name}: {count} of {total} files selected ({status.value})"

    def _one(self, prefix: str) -> LibraryRecord:
        if not prefix or len(prefix) > 64 or any(c not in "0123456789abcdef" for c in prefix):
            raise ProtocolError(ErrorCode.INVALID_ARGUMENT, "give a library id (hex) or a unique prefix of it")
        found = self.state.find(prefix)
        if not found:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no library with id {prefix}; see `emma downloads`")
        if len(found) > 1:
            raise ProtocolError(ErrorCode.INVALID_ARGUMENT, f"{prefix} matches {len(found)} libraries; give more")
        return found[0]

    def library_action(self, action: control_pb2.LibraryAction) -> str:
        record = self._one(action.library_id.lower())
        if action.action == control_pb2.LibraryAction.PAUSE:
            if record.status is Status.STOPPED:
                return f"{record.name} is complete and not seeding"
            if record.status is Status.SEEDING:
                self.state.set_status(record.id, Status.STOPPED)
                return f"paused {record.name}: complete, no longer seeding (`emma resume` seeds it again)"
            self.state.set_status(record.id, Status.PAUSED)
            return f"paused {record.name}"
        if action.action == control_pb2.LibraryAction.RESUME:
            if record.status is Status.SEEDING:
                return f"{record.name} is complete and seeding"
            if record.status is Status.STOPPED:
                self.state.set_status(record.id, Status.SEEDING)
                return f"seeding {record.name} again"
            self.state.set_status(record.id, Status.DOWNLOADING)
            return f"resumed {record.name}"
        if action.action == control_pb2.LibraryAction.REMOVE:
            self.state.remove(record.id)
            lib = self.config.libs_dir / library_file_name(record.id)
            lib.unlink(missing_ok=True)
            return f"removed {record.name} (files kept in {record.stuff_path.parent})"
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT, "library action must be pause, resume or remove")

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


def _folder(to: str) -> Path:
    """The folder of `emma get --to`, made if missing; INVALID_ARGUMENT if it cannot be made or written."""
    if len(to) > 4096 or not to.isprintable() or not Path(to).is_absolute():
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT, f"--to: give the absolute path of a folder, not {to[:80]!r}")
    folder = Path(to)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT,
                            f"--to: cannot make the folder {folder}: {exc.strerror or exc}; give another") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT, f"--to: cannot write in {folder}; give a folder you may "
                                                        "write in, or change its permissions")
    return folder


def _check_only(library: Library, only: tuple[str, ...]) -> int:
    """How many files the globs select; an INVALID_ARGUMENT error if they are malformed or select none."""
    if not only:
        return len(library.tree) if library.tree is not None else 1
    if library.tree is None:
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT,
                            f"{library.name} is a single file; --only selects files of a folder's library")
    if len(only) > MAX_GLOBS or any(not g or len(g) > MAX_GLOB_CHARS or not g.isprintable() for g in only):
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT, f"give at most {MAX_GLOBS} globs of printable text "
                                                        f"(each at most {MAX_GLOB_CHARS} characters)")
    count = len(library.tree.select(only))
    if not count:
        shown = ", ".join(repr(g[:60]) for g in only[:3])
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT,
                            f"--only {shown} matches none of the {len(library.tree)} files of {library.name}; "
                            f"see their paths with `emma lib show LIB --json`")
    return count


def _display_state(record: LibraryRecord) -> str:
    return view.state_word(record, Live(hub_answered=True, peers=1), ()).state


def _ok(message: str) -> control_pb2.ControlReply:
    return control_pb2.ControlReply(ok=control_pb2.Ok(message=message))


def _decode(frame: bytes) -> control_pb2.ControlRequest:
    if len(frame) > MAX_CONTROL_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE, "control request too large")
    request = control_pb2.ControlRequest()
    try:
        request.ParseFromString(frame)
    except DecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, "cannot decode control request") from exc
    CONTROL.check(request.version)
    return request
