"""What a player knows about: libraries it shares and libraries it downloads.

The CLI and the Requestor both go through here to put a library into
``<data>/libs/`` and ``state.db``, so there is one way a library is added.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from services.peer.bitfield import Bitfield
from services.peer.library import Library, LibraryError, read_library
from services.peer.state import State, Status
from services.runtime.config import Config
from services.runtime.logs import get_logger

log = get_logger("events")


def record_shared(config: Config, library: Library, lib_path: Path, stuff_path: Path) -> None:
    """Record that this player holds all of ``library`` at ``stuff_path`` and seeds it."""
    config.ensure_dirs()
    state = State(config.state_db)
    try:
        state.upsert(
            library_id=library.id_hex, lib_path=lib_path, stuff_path=stuff_path, name=library.name,
            size=library.size, books=library.books, status=Status.SEEDING, have=Bitfield.full(library.books),
        )
    finally:
        state.close()


def download_path(config: Config, library: Library) -> Path:
    return config.downloads_dir / library.name


def record_download(state: State, config: Config, library: Library, lib_path: Path) -> None:
    """Record a library to download (no-op for one already known)."""
    state.upsert(
        library_id=library.id_hex, lib_path=lib_path, stuff_path=download_path(config, library),
        name=library.name, size=library.size, books=library.books, status=Status.DOWNLOADING,
        have=Bitfield(library.books),
    )


def import_library(config: Config, library: Library, source: Path) -> Path:
    """Copy a .lib into ``<data>/libs/`` under its canonical name; return the new path."""
    config.ensure_dirs()
    target = config.libs_dir / library.file_name
    if source.resolve() != target.resolve():
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
    return target


def import_dropped(config: Config, state: State) -> None:
    """Download every library dropped into ``<data>/libs/`` that is not known yet.

    A file that is not a valid library is renamed to ``<name>.bad`` (and logged), so it is
    reported once rather than on every look.
    """
    for path in sorted(config.libs_dir.glob("*.lib")):
        try:
            library = read_library(path)
        except LibraryError as exc:
            bad = path.with_name(path.name + ".bad")
            log.error("library_rejected", path=str(path), error=str(exc), moved_to=str(bad))
            path.rename(bad)
            continue
        if state.get(library.id_hex) is None:
            target = import_library(config, library, path)
            if target != path:
                path.unlink()
            record_download(state, config, library, target)
            log.info("library_added", library=library.id_hex, name=library.name, size=library.size)
