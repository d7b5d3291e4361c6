"""Where the Requestor's decisions meet the disk: the partial files and state.db.

The Requestor's loop hands the logic's disk actions here: ``open`` a download's
partial file, ``land`` a book (verify, then pwrite), ``persist`` synced
progress, ``stop`` (sync, persist, close), ``finish`` (rename, mark seeding),
``fail`` (mark failed). Nothing here decides. What goes wrong becomes one log
line with what to do next, and a status the Maestro shows.

Crash consistency: ``persist`` runs after the batch's fdatasync and ``stop``
syncs before it persists, so state.db never marks a book held that is not on
disk.
"""

from __future__ import annotations

from pathlib import Path

from services.peer import requestor_logic as rl
from services.peer.library import Library, LibraryError, read_library
from services.peer.partfile import DiskError, PartFile
from services.peer.state import LibraryRecord, State, Status
from services.peer.writer import Written, land
from services.runtime.logs import get_logger

log = get_logger("events")


class Storage:
    def __init__(self, state: State) -> None:
        self.state = state
        self.files: dict[bytes, PartFile] = {}

    def open(self, record: LibraryRecord) -> Library | None:
        """Open the download's library and partial file; None (and the download failed) if either cannot be."""
        try:
            library = read_library(record.lib_path)
            self.files[library.id] = PartFile.open(library, record.stuff_path)
        except (LibraryError, DiskError) as exc:
            self._failed(record.id, str(exc), "free disk space or fix the library, then `emma resume`")
            return None
        return library

    def fd(self, library_id: bytes) -> int:
        return self.files[library_id].fd

    def land(self, action: rl.Land) -> Written:
        part = self.files[action.library_id]
        return land(part.library, action.book, action.endpoint, action.payload, part.fd)

    def persist(self, action: rl.Persist) -> None:
        self.state.save_progress(action.library_id.hex(), action.have, action.downloaded, action.fetched)

    def stop(self, action: rl.Stop) -> None:
        part = self.files.pop(action.library_id)
        try:
            part.sync()
            self.state.save_progress(action.library_id.hex(), action.have, action.downloaded, action.fetched)
        except DiskError as exc:
            log.error("sync_failed", library=action.library_id.hex(), error=str(exc),
                      hint="check the disk; books since the last sync will be fetched again")
        finally:
            part.close()

    def finish(self, action: rl.Finish) -> Path | None:
        """Rename the complete file to its final name and seed it; None (and the download failed) if it cannot be."""
        part = self.files.pop(action.library_id)
        try:
            final = part.finish()
        except DiskError as exc:
            self._failed(action.library_id.hex(), str(exc), "free disk space, then `emma resume`")
            return None
        finally:
            part.close()
        self.state.set_status(action.library_id.hex(), Status.SEEDING, final)
        log.info("download_complete", library=action.library_id.hex(), name=part.library.name, path=str(final),
                 fetched=action.fetched, bad_books=action.bad_books)
        return final

    def fail(self, action: rl.Fail) -> None:
        self._failed(action.library_id.hex(), action.reason, "free disk space, then `emma resume`")

    def _failed(self, library_hex: str, error: str, hint: str) -> None:
        log.error("download_failed", library=library_hex, error=error, hint=hint)
        self.state.set_status(library_hex, Status.ERROR)

    def close(self) -> None:
        for part in self.files.values():
            part.close()
        self.files.clear()
