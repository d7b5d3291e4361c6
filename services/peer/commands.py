"""What the Requestor does with a command the Maestro forwards: plain logic, no sockets.

While a player runs, its Requestor is the one process that adds, pauses, resumes and removes
libraries (state.db's records and the ``.lib`` files of ``libs/``): a CLI's ``emma get``,
``pause``, ``resume``, ``remove`` and ``share`` reach it as a ``ChildCommand`` on
``run/requestor.sock`` (through the Maestro, which pairs the reply by its ``id``).

``Commands.handle(frame, now)`` decodes and checks the command, changes state.db and libs/,
and returns the encoded ``ChildReply`` with the ids of the libraries whose record changed,
for the Requestor to act on at once (open, pause or drop those downloads, tell the
Distributor). Nothing in a command is trusted: a path to add is read as a library would be
from anywhere (a regular file, capped, every field checked); a malformed command gets an
error reply, and nothing raised by a command stops the Requestor.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from google.protobuf.message import DecodeError

from services.peer import catalog, hooks, links
from services.peer.library import MAX_HUBS, Library, LibraryError, library_file_name, read_library
from services.peer.state import LibraryRecord, State, Status
from services.runtime.config import Config
from services.supervisor import download_view as view
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.pb import control_pb2
from services.wire.versions import CONTROL

MAX_COMMAND_BYTES = 64 * 1024  # a command or a control request, at most
M = TypeVar("M", control_pb2.ControlRequest, control_pb2.ChildCommand)
MAX_GLOBS = 64  # globs of one `emma get --only`
MAX_GLOB_CHARS = 1024


@dataclass(frozen=True)
class Outcome:
    reply: bytes  # the encoded ChildReply
    changed: tuple[str, ...] = ()  # ids (hex) of the libraries whose record changed or went


class Commands:
    """``release(library_id)``: stop downloading that library now, its progress saved (before a share records it
    as complete, so the download's last save cannot overwrite the full bitfield)."""

    def __init__(self, config: Config, state: State, release: Callable[[str], None]) -> None:
        self.config = config
        self.state = state
        self.release = release
        self.changed: list[str] = []

    def handle(self, frame: bytes, now: float) -> Outcome:
        self.changed = []
        command_id = 0
        try:
            command = _decode(frame)
            command_id = command.id
            reply = control_pb2.ChildReply(ok=control_pb2.Ok(message=self._dispatch(command)))
        except ProtocolError as exc:
            reply = control_pb2.ChildReply(error=exc.to_pb())
        except (OSError, sqlite3.Error) as exc:
            failure = ProtocolError(ErrorCode.INTERNAL, f"the player cannot save it: {_why(exc)}; free space in "
                                                        f"{self.config.data_dir} or fix its permissions, then retry")
            reply = control_pb2.ChildReply(error=failure.to_pb())
        reply.version, reply.id = CONTROL.current, command_id
        return Outcome(reply.SerializeToString(), tuple(dict.fromkeys(self.changed)))

    def _dispatch(self, command: control_pb2.ChildCommand) -> str:
        kind = command.WhichOneof("body")
        if kind == "add":
            body = command.add
            return self.add(Path(body.path), tuple(body.only), body.to, body.on_complete, tuple(body.hubs))
        if kind == "library":
            return self.library_action(command.library)
        if kind == "seed":
            return self.seed(Path(command.seed.path), Path(command.seed.stuff_path))
        raise ProtocolError(ErrorCode.UNKNOWN_REQUEST, "command has no body this Requestor knows; upgrade the player")

    def add(self, path: Path, only: tuple[str, ...] = (), to: str = "", on_complete: str = "",
            hubs: tuple[str, ...] = ()) -> str:
        """Download the library at ``path`` (of a tree, the files ``only`` selects), into the folder ``to``, running
        ``on_complete`` when done, asking ``hubs`` instead of the library's own (`emma get --hub`)."""
        library = _read(path)
        if hubs:
            try:
                given = [links.parse_hub(hub, " (--hub)") for hub in hubs[:MAX_HUBS + 1]]  # more: with_hubs says so
                library = library.with_hubs(tuple(hub for hub, _ in given), tuple(key for _, key in given))
            except (LibraryError, links.LinkError) as exc:
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
            return self._known(existing, library, path, only, on_complete, hubs)
        # The .lib first (a failure leaves nothing recorded), then its record, in one turn of the Requestor's loop:
        # its drop folder's scan cannot take the file in between for a library dropped in without the command.
        target = catalog.import_library(self.config, library, path, changed=bool(hubs))
        self.changed.append(library.id_hex)
        catalog.record_download(self.state, self.config, library, target, only, folder)
        if on_complete:
            self.state.set_on_complete(library.id_hex, on_complete)
        chosen = f": {selected} of {len(library.tree)} files selected" if only and library.tree is not None else ""
        into = f" into {folder}" if folder is not None else ""
        return f"added {library.id_hex} ({library.name}){chosen}{into}"

    def _known(self, existing: LibraryRecord, library: Library, path: Path, only: tuple[str, ...], on_complete: str,
               hubs: tuple[str, ...]) -> str:
        """A library this player knows, asked for again: a new --on-complete, other hubs, more files selected."""
        if on_complete and existing.status is not Status.SEEDING:
            self.state.set_on_complete(existing.id, on_complete)
        if hubs:
            catalog.import_library(self.config, library, path, changed=True)
            return (f"{library.id_hex} is already known ({_display_state(existing)}); it asks "
                    f"{', '.join(library.hubs)} from its next start (`emma pause` then `emma resume` it now)")
        if library.tree is None or not existing.only:
            return f"{library.id_hex} is already known ({_display_state(existing)})"
        return self._select_more(existing, library, only)

    def _select_more(self, record: LibraryRecord, library: Library, only: tuple[str, ...]) -> str:
        """A known tree asked for again: its selection grows by ``only`` (none given: to every file)."""
        merged = tuple(sorted({*record.only, *only})) if only else ()
        count = len(library.tree.select(merged)) if library.tree is not None else 1
        total = len(library.tree) if library.tree is not None else 1
        if merged == record.only:
            return f"{library.id_hex} is already known ({_display_state(record)}, {count} of {total} files selected)"
        status = Status.DOWNLOADING if record.status is Status.SEEDING else record.status
        self.changed.append(record.id)
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
                self._set_status(record, Status.STOPPED)
                return f"paused {record.name}: complete, no longer seeding (`emma resume` seeds it again)"
            self._set_status(record, Status.PAUSED)
            return f"paused {record.name}"
        if action.action == control_pb2.LibraryAction.RESUME:
            if record.status is Status.SEEDING:
                return f"{record.name} is complete and seeding"
            if record.status is Status.STOPPED:
                self._set_status(record, Status.SEEDING)
                return f"seeding {record.name} again"
            self._set_status(record, Status.DOWNLOADING)
            return f"resumed {record.name}"
        if action.action == control_pb2.LibraryAction.REMOVE:
            self.changed.append(record.id)
            self.state.remove(record.id)
            (self.config.libs_dir / library_file_name(record.id)).unlink(missing_ok=True)
            return f"removed {record.name} (files kept in {record.stuff_path.parent})"
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT, "library action must be pause, resume or remove")

    def _set_status(self, record: LibraryRecord, status: Status) -> None:
        self.changed.append(record.id)
        self.state.set_status(record.id, status)

    def seed(self, path: Path, stuff_path: Path) -> str:
        """`emma share` of a running player: the library the CLI hashed (at ``path``) is put into libs/ and
        recorded as complete and seeding ``stuff_path``."""
        if not (stuff_path.is_absolute() and os.path.exists(stuff_path)):
            raise ProtocolError(ErrorCode.INVALID_ARGUMENT,
                                f"give the absolute path of the shared file or folder, not {str(stuff_path)[:80]!r}")
        library = _read(path)
        self.release(library.id_hex)
        self.changed.append(library.id_hex)
        target = catalog.import_library(self.config, library, path)
        catalog.record_seeding(self.state, library, target, stuff_path)
        return f"seeding {library.id_hex} ({library.name})"


def _read(path: Path) -> Library:
    if not path.is_absolute():
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT,
                            f"give the absolute path of the .lib file, not {str(path)[:80]!r}")
    try:
        return read_library(path)
    except LibraryError as exc:
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT, str(exc)) from exc


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
    return view.state_word(record, view.Live(hub_answered=True, peers=1), ()).state


def _why(exc: OSError | sqlite3.Error) -> str:
    return (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)


def _decode(frame: bytes) -> control_pb2.ChildCommand:
    return decode_control(control_pb2.ChildCommand(), frame, "command")


def decode_control(message: M, frame: bytes, what: str) -> M:
    """``message`` (a control-protocol message: a CLI's request, a forwarded command) parsed from ``frame``;
    ProtocolError when it is too large, malformed, or of a control version this code does not accept."""
    if len(frame) > MAX_COMMAND_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"{what} too large")
    try:
        message.ParseFromString(frame)
    except DecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"cannot decode the {what}") from exc
    CONTROL.check(message.version)
    return message
