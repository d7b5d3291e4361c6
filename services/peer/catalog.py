"""What a player knows about: libraries it shares and libraries it downloads.

The CLI and the Requestor both go through here to put a library into
``<data>/libs/`` and ``state.db``, so there is one way a library is added.

The Requestor looks at ``<data>/libs/`` every reload (``DropFolder.scan``).
Parsed libraries are cached by (device, inode, size, mtime_ns), so a folder of
unchanged files costs one ``stat`` each per look, not a read and a parse. A
file that is not a library is renamed to ``<name>.bad`` and logged once; one
that cannot be renamed or imported is logged once and left alone until it
changes.
"""

from __future__ import annotations

from pathlib import Path

from services.peer.bitfield import Bitfield
from services.peer.library import (
    Library,
    LibraryCache,
    LibraryError,
    Stamp,
    file_stamp,
    write_library,
)
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


def download_path(config: Config, library: Library, taken: set[Path] | None = None, folder: Path | None = None
                  ) -> Path:
    """Where a download goes: ``<downloads>/<name>`` (or ``<folder>/<name>``: `emma get --to`). A tree downloads
    there in place (so what is there already is checked and kept), unless another library of this player goes
    there: then to ``<name>.<8 hex of the id>``. A file gets its final name when complete (partfile.final_path)."""
    path = (folder or config.downloads_dir) / library.name
    if library.tree is not None and path in (taken or set()):
        return path.with_name(f"{library.name}.{library.id_hex[:8]}")
    return path


def record_download(state: State, config: Config, library: Library, lib_path: Path,
                    only: tuple[str, ...] = (), folder: Path | None = None, status: Status = Status.DOWNLOADING
                    ) -> None:
    """Record a library to download (into ``folder``, else the downloads folder), of a tree only the files
    ``only`` selects (no-op for one already known)."""
    state.upsert(
        library_id=library.id_hex, lib_path=lib_path,
        stuff_path=download_path(config, library, state.stuff_paths(), folder),
        name=library.name, size=library.size, books=library.books, status=status,
        have=Bitfield(library.books), only=only,
    )


def import_library(config: Config, library: Library, source: Path, changed: bool = False) -> Path:
    """Put ``library`` into ``<data>/libs/`` under its canonical name; return the new path.

    The validated library is written, not ``source`` copied: the file may have changed (or
    become a FIFO or a link to a device) since it was read.
    """
    config.ensure_dirs()
    target = config.libs_dir / library.file_name
    if changed or source.resolve() != target.resolve():  # changed: not what ``source`` holds (other hubs)
        write_library(library, target)
    return target


class DropFolder:
    """Libraries dropped into ``<data>/libs/``: each new one is imported and recorded to download."""

    def __init__(self) -> None:
        self.cache = LibraryCache()
        self.stuck: dict[Path, Stamp | None] = {}  # failed and logged; tried again once the file changes

    def scan(self, config: Config, state: State) -> None:
        paths = sorted(config.libs_dir.glob("*.lib"))
        present = set(paths)
        self.cache.keep_only(present)
        self.stuck = {path: stamp for path, stamp in self.stuck.items() if path in present}
        for path in paths:
            if path in self.stuck and self.stuck[path] == _stamp(path):
                continue
            try:
                library = self.cache.read(path)
            except LibraryError as exc:
                self._set_aside(path, exc)
                continue
            if state.get(library.id_hex) is None:
                self._import(config, state, library, path)

    def _set_aside(self, path: Path, exc: LibraryError) -> None:
        bad = path.with_name(path.name + ".bad")
        try:
            path.rename(bad)
        except FileNotFoundError:
            return  # gone since the glob: nothing to set aside
        except OSError as rename_exc:
            log.error("library_rejected", path=str(path), error=str(exc), moved_to=None,
                      hint=f"cannot rename it ({rename_exc.strerror}); delete or fix it")
            self.stuck[path] = _stamp(path)
            return
        log.error("library_rejected", path=str(path), error=str(exc), moved_to=str(bad),
                  hint="get a good copy of the library and drop it in again")

    def _import(self, config: Config, state: State, library: Library, path: Path) -> None:
        try:
            target = import_library(config, library, path)
            if target != path:
                path.unlink()
        except OSError as exc:
            log.error("library_import_failed", path=str(path), library=library.id_hex, error=exc.strerror,
                      hint="free disk space or fix the permissions of the libs folder; it is tried again "
                           "when the file changes")
            self.stuck[path] = _stamp(path)
            return
        record_download(state, config, library, target)
        log.info("library_added", library=library.id_hex, name=library.name, size=library.size)


def _stamp(path: Path) -> Stamp | None:
    try:
        return file_stamp(path.stat())
    except (OSError, ValueError):
        return None
