"""What a player knows about: libraries it shares and libraries it downloads.

The Requestor (its drop folder, and the commands the Maestro forwards to it) and, while no
player runs, the CLI go through here to put a library into ``<data>/libs/`` and ``state.db``,
so there is one way a library is added.

The Requestor looks at ``<data>/libs/`` when the folder changes (``DropFolder.changed``,
one ``stat`` of the folder per loop turn) and now and then in full (``DropFolder.scan``).
Files are known by (device, inode, size, mtime_ns), so a folder of unchanged files
costs one ``stat`` each per scan, not a read, a parse and a state.db query. A
file that is not a library is renamed to ``<name>.bad`` and logged once; one
that cannot be renamed or imported is logged once and left alone until it
changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from services.peer.bitfield import Bitfield
from services.peer.library import (
    LIB_PREFIX,
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
RECORDED_KEPT = 1024  # ids of the libraries a scan recorded, kept for the Requestor to open just those
RECENT_SECONDS = 0.05  # a folder changed this recently is looked at again: a change in the same clock tick hides


def record_shared(config: Config, library: Library, lib_path: Path, stuff_path: Path) -> None:
    """Record that this player holds all of ``library`` at ``stuff_path`` and seeds it (no player runs; while one
    does, its Requestor records it: ``services/peer/commands.py``)."""
    config.ensure_dirs()
    state = State(config.state_db)
    try:
        record_seeding(state, library, lib_path, stuff_path)
    finally:
        state.close()


def record_seeding(state: State, library: Library, lib_path: Path, stuff_path: Path) -> None:
    """Record in ``state`` that this player holds all of ``library`` at ``stuff_path`` and seeds it."""
    state.upsert(
        library_id=library.id_hex, lib_path=lib_path, stuff_path=stuff_path, name=library.name,
        size=library.size, books=library.books, status=Status.SEEDING, have=Bitfield.full(library.books),
    )


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
    """Libraries dropped into ``<data>/libs/``: each new one is imported and recorded to download.

    ``changed`` is the cheap look a loop makes every turn: one ``stat`` of the folder, whose
    modification time moves when a file is added, renamed or removed in it. ``scan`` then looks at
    every file: one ``stat`` each; a file is read and parsed only when its stamp (device, inode,
    size, mtime) is new and it does not bear the name of a library state.db holds
    (``lib_<id>.lib``), and state.db asked about its library only then.
    """

    def __init__(self) -> None:
        self.cache = LibraryCache()
        self.stuck: dict[str, Stamp | None] = {}  # failed and logged; tried again once the file changes
        self.names: set[str] = set()  # the .lib files at the last scan
        self.known: dict[str, Stamp] = {}  # files whose library state.db holds, as they were then
        self.folder: tuple[int, int, int] | None = None  # (st_ino, st_mtime_ns, st_ctime_ns) at the last scan
        self.imported = 0  # libraries recorded to download so far
        self.recorded: list[str] = []  # the ids of the last RECORDED_KEPT of them, oldest first

    def changed(self, config: Config, wall_now: float) -> bool:
        """Whether the folder changed since the last scan (or may have: it changed within a tick of the clock)."""
        try:
            info = config.libs_dir.stat()
        except OSError:
            return True  # gone or unreadable: the scan says why
        stamp = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
        if stamp != self.folder:
            return True
        return wall_now - info.st_mtime_ns / 1e9 < RECENT_SECONDS  # a second change in the same tick keeps the time

    def scan(self, config: Config, state: State, full: bool = True) -> None:
        """Import the new libraries of the folder. Not ``full``: a file known under the same name and inode
        (which a rename over it changes) is taken as it was, without a ``stat``."""
        folder = config.libs_dir
        try:
            self.folder = _folder_stamp(folder)
            with os.scandir(folder) as entries:
                inodes = {entry.name: entry.inode() for entry in entries if entry.name.endswith(".lib")}
        except OSError:
            self.folder, inodes = None, {}
        names = sorted(inodes)
        if set(names) != self.names:  # files came or went: forget what is known of those gone
            self.names = set(names)
            self.cache.keep_only(folder / name for name in names)
            self.stuck = {name: stamp for name, stamp in self.stuck.items() if name in self.names}
            self.known = {name: stamp for name, stamp in self.known.items() if name in self.names}
        recorded: set[str] | None = None  # ids in state.db, asked once a scan when a file needs it
        for name in names:
            if not full and name in self.known and self.known[name][1] == inodes[name]:
                continue
            stamp = _stamp(os.path.join(folder, name))
            if name in self.stuck and self.stuck[name] == stamp:
                continue
            if stamp is not None and self.known.get(name) == stamp:
                continue
            if stamp is not None and name.startswith(LIB_PREFIX):  # a library's own name: no need to parse it
                recorded = state.ids() if recorded is None else recorded
                if name[len(LIB_PREFIX):-len(".lib")] in recorded:
                    self.known[name] = stamp
                    continue
            path = folder / name
            try:
                library = self.cache.read(path)
            except LibraryError as exc:
                self._set_aside(path, exc)
                continue
            if state.get(library.id_hex) is None:
                self._import(config, state, library, path)
            elif stamp is not None:
                self.known[name] = stamp

    def _set_aside(self, path: Path, exc: LibraryError) -> None:
        bad = path.with_name(path.name + ".bad")
        try:
            path.rename(bad)
        except FileNotFoundError:
            return  # gone since the glob: nothing to set aside
        except OSError as rename_exc:
            log.error("library_rejected", path=str(path), error=str(exc), moved_to=None,
                      hint=f"cannot rename it ({rename_exc.strerror}); delete or fix it")
            self.stuck[path.name] = _stamp(path)
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
            self.stuck[path.name] = _stamp(path)
            return
        record_download(state, config, library, target)
        self.imported += 1
        self.recorded = [*self.recorded[-RECORDED_KEPT + 1:], library.id_hex]
        log.info("library_added", library=library.id_hex, name=library.name, size=library.size)


def _folder_stamp(folder: Path) -> tuple[int, int, int]:
    info = folder.stat()
    return info.st_ino, info.st_mtime_ns, info.st_ctime_ns


def _stamp(path: Path | str) -> Stamp | None:
    try:
        return file_stamp(os.stat(path))
    except (OSError, ValueError):
        return None
