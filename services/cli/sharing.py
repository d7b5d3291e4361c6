"""Sharing a file or a folder: librarify it, write its library, record it as seeding.

The one path behind ``emma share`` and the console's Upload File. A folder becomes a
tree library (format version 2); what is skipped in it (links, sockets, devices) is said
on stderr, one line each. Every hub the library lists is named with ``hub.key`` (hubs
sharing one Redis share one key pair), and the library is signed with this player's
publisher key. With a player running, its Requestor records it (the CLI writes
the library outside ``libs/`` and asks, through the Maestro: one process writes
what a running player holds, and a download of the same library is stopped
before it could save over the record); without one, the CLI records it in
state.db itself and the library is seeded when ``emma peer`` starts.
"""

from __future__ import annotations

import socket
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from services.cli.fmt import printable
from services.cli.progress import byte_progress
from services.hub.client import HubClient
from services.hub.client_types import HubClientError
from services.peer import catalog, signing
from services.peer.librarifier import Warn, librarify, librarify_tree, stuff_size, walk
from services.peer.library import HashAlgorithm, Library, LibraryError, write_library
from services.peer.state import StateError
from services.runtime.config import Config, given_path
from services.supervisor.control_client import ControlClient, ControlError, MaestroNotRunning
from services.wire import curve
from services.wire.ids import InvalidEndpoint, parse_endpoint

HUB_CHECK_SECONDS = 2.0  # a hub silent this long when a library is shared gets a warning
PLAYER_CHECK_SECONDS = 2.0  # a Maestro silent this long is taken for none: the CLI records the library itself


class ShareError(ValueError):
    """The file cannot be shared; the message says why."""


@dataclass(frozen=True)
class Shared:
    library: Library
    lib_path: Path
    stuff_path: Path
    seconds: float
    skipped: int = 0  # entries of a folder left out (links, sockets, devices)


def warn_stderr(message: str) -> None:
    print(f"warning: {printable(message)}", file=sys.stderr)


def share_file(
    config: Config,
    file: Path,
    *,
    hubs: tuple[str, ...] = (),
    book_size: int | None = None,
    algorithm: HashAlgorithm = HashAlgorithm.BLAKE3,
    out: Path | None = None,
    warn: Warn = warn_stderr,
) -> Shared:
    """Hash ``file`` or a folder (with a progress bar on a terminal), write its library, record it as seeding."""
    hubs = hubs or config.hub_endpoints
    for endpoint in hubs:
        try:
            parse_endpoint(endpoint)
        except InvalidEndpoint as exc:
            raise ShareError(str(exc)) from None
    path = given_path(file)
    started = time.monotonic()
    hub_key = str(config.get("hub.key"))
    hub_keys = (hub_key,) * len(hubs) if hub_key else ()
    try:
        publisher = signing.load_publisher(config.data_dir)
    except (signing.SignatureError, OSError) as exc:
        raise ShareError(str(exc)) from None
    skipped = 0
    try:
        if path.is_dir():
            walked = walk(path, warn)
            skipped = walked.skipped
            with byte_progress(f"hashing {path.name}/ ({len(walked.files)} files)", walked.size) as advance:
                library = librarify_tree(path, hubs=hubs, book_size=book_size, algorithm=algorithm,
                                         progress=advance, walked=walked, hub_keys=hub_keys, publisher=publisher)
        else:
            total = stuff_size(path)
            with byte_progress(f"hashing {path.name}", total) as advance:
                library = librarify(path, hubs=hubs, book_size=book_size, algorithm=algorithm, progress=advance,
                                    hub_keys=hub_keys, publisher=publisher)
    except LibraryError as exc:
        raise ShareError(str(exc)) from None
    seconds = time.monotonic() - started
    target = out if out is not None else config.libs_dir / library.file_name
    if not _seeded_by_player(config, library, target, path, out is not None):
        _record_here(config, library, target, path)
    for problem in silent_hubs(hubs, hub_keys, curve.load_or_create(config.data_dir)):
        warn(problem)
    return Shared(library=library, lib_path=target, stuff_path=path, seconds=seconds, skipped=skipped)


def _seeded_by_player(config: Config, library: Library, target: Path, stuff: Path, out: bool) -> bool:
    """Ask the running player's Requestor to record the library as seeding; False when no player runs."""
    client = ControlClient(config.run_dir, timeout=PLAYER_CHECK_SECONDS)
    try:
        client.services()
    except (MaestroNotRunning, ControlError):
        return False
    with tempfile.TemporaryDirectory(prefix="emma-share-") as folder:
        written = target if out else Path(folder) / library.file_name  # the player puts it into libs/
        _write(library, written)
        try:
            client.seed(written, stuff)
        except MaestroNotRunning as exc:
            raise ShareError(f"{exc}: the library is written but not recorded as seeding; share it again") from None
        except ControlError as exc:
            raise ShareError(f"the player did not record the library as seeding: {exc}") from None
    return True


def _record_here(config: Config, library: Library, target: Path, stuff: Path) -> None:
    """No player runs: write the library and record it as seeding in state.db (seeded when a player starts)."""
    _write(library, target)
    try:
        catalog.record_shared(config, library, target, stuff)
    except (OSError, sqlite3.Error, StateError) as exc:
        if target.parent.resolve() == config.libs_dir.resolve():
            target.unlink(missing_ok=True)  # else the player would take it, unrecorded, as a library to download
        why = exc if isinstance(exc, StateError) else getattr(exc, "strerror", None) or exc
        raise ShareError(f"cannot record the library as seeding in {config.state_db}: {why}; nothing shared") from None


def _write(library: Library, target: Path) -> None:
    try:
        write_library(library, target)
    except OSError as exc:
        raise ShareError(f"cannot write {target}: {exc.strerror or exc}") from None


def silent_hubs(hubs: tuple[str, ...], hub_keys: tuple[str, ...], identity: curve.KeyPair) -> list[str]:
    """A warning for each hub that does not answer now (within HUB_CHECK_SECONDS): players would find no one."""
    problems = []
    for index, hub in enumerate(hubs):
        key = hub_keys[index] if index < len(hub_keys) else ""
        host, port = parse_endpoint(hub)
        try:  # nothing listening is told at once (refused), not after a timeout
            socket.create_connection((host, port), timeout=HUB_CHECK_SECONDS).close()
        except OSError as exc:
            problems.append(_silent(hub, exc.strerror or str(exc)))
            continue
        client = HubClient(hub, timeout=HUB_CHECK_SECONDS, attempts=1, identity=identity,
                           keys={hub: key.encode("ascii")} if key else None)
        try:
            client.health()
        except HubClientError as exc:
            problems.append(_silent(hub, str(exc)))
        finally:
            client.close()
    return problems


def _silent(hub: str, why: str) -> str:
    return (f"hub {hub} does not answer ({why}); players cannot find this library through it until it runs: "
            "start it (`emma hub`), or share again naming a hub that runs (settings hub.ip, hub.port)")
