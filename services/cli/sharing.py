"""Sharing a file: librarify it, write its library, record it as seeding.

The one path behind ``emma share`` and the console's Upload File. Every hub the
library lists is named with ``hub.key`` (hubs sharing one Redis share one key
pair), and the library is signed with this player's publisher key. The running
Distributor picks the new row in state.db up within a second; without a
player, it is seeded when ``emma peer`` starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from services.cli.progress import byte_progress
from services.peer import catalog, signing
from services.peer.librarifier import librarify, stuff_size
from services.peer.library import HashAlgorithm, Library, LibraryError, write_library
from services.runtime.config import Config
from services.wire.ids import InvalidEndpoint, parse_endpoint


class ShareError(ValueError):
    """The file cannot be shared; the message says why."""


@dataclass(frozen=True)
class Shared:
    library: Library
    lib_path: Path
    stuff_path: Path
    seconds: float


def parse_algorithm(name: str) -> HashAlgorithm:
    try:
        return HashAlgorithm(name.lower())
    except ValueError:
        raise ShareError(f"unknown hash {name!r}: use blake3 or sha256") from None


def share_file(
    config: Config,
    file: Path,
    *,
    hubs: tuple[str, ...] = (),
    book_size: int | None = None,
    algorithm: HashAlgorithm = HashAlgorithm.BLAKE3,
    out: Path | None = None,
) -> Shared:
    """Hash ``file`` (with a progress bar on a terminal), write its library, record it as seeding."""
    hubs = hubs or config.hub_endpoints
    for endpoint in hubs:
        try:
            parse_endpoint(endpoint)
        except InvalidEndpoint as exc:
            raise ShareError(str(exc)) from None
    path = file.expanduser().absolute()
    started = time.monotonic()
    hub_key = str(config.get("hub.key"))
    try:
        publisher = signing.load_publisher(config.data_dir)
    except (signing.SignatureError, OSError) as exc:
        raise ShareError(str(exc)) from None
    try:
        total = stuff_size(path)
        with byte_progress(f"hashing {path.name}", total) as advance:
            library = librarify(path, hubs=hubs, book_size=book_size, algorithm=algorithm, progress=advance,
                                hub_keys=(hub_key,) * len(hubs) if hub_key else (), publisher=publisher)
    except LibraryError as exc:
        raise ShareError(str(exc)) from None
    seconds = time.monotonic() - started
    target = out if out is not None else config.libs_dir / library.file_name
    try:
        write_library(library, target)
        catalog.record_shared(config, library, target, path)
    except OSError as exc:
        raise ShareError(f"cannot write {target}: {exc.strerror or exc}") from None
    return Shared(library=library, lib_path=target, stuff_path=path, seconds=seconds)
