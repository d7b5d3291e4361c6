"""Where the Requestor's decisions meet the disk: the partial files, the trees and state.db.

The Requestor's loop hands the logic's disk actions here: ``open`` a download's
partial file (or, for a tree library, its files in place: treefiles.py), ``land``
a book (verify, then pwrite), ``persist`` synced progress, ``stop`` (sync,
persist, close), ``finish`` (rename, mark seeding), ``fail`` (mark failed).
Nothing here decides. What goes wrong becomes one log line with what to do
next, and a status the Maestro shows.

Crash consistency: ``persist`` runs after the batch's fdatasync and ``stop``
syncs before it persists, so state.db never marks a book held that is not on
disk.

When the disk fails. A full disk, a quota or an I/O error (``DiskError.
transient``) on the downloads folder does not end a download for good: it is
marked ``error`` (if state.db can still be written), and ``DiskWaits`` says
when ``ready`` lets the Requestor open it again: after RETRY_FIRST (1 s),
doubling to RETRY_MOST (60 s) while it keeps failing. A download opened again
waits no more once a book is written. A state.db write that fails the same way
(the data folder is full) is kept, the newest per download, and made again on
the same backoff (key ``DATA``); a download whose ``seeding`` could not be saved
is never opened again meanwhile. ``detail`` is what the Requestor's heartbeat
says, so the Maestro shows the reason even when no log line can be written.
Other errors (permissions, a broken library) mark the download ``error`` until
the user resumes it.

A single-file download with nothing held opens the same way when a file of the library's size
stands at its place (its final names, or its partial file): ``look`` reads it off the loop
first (partfile.py); a complete copy is seeded where it is (``HeldFile``: the download is
complete at once), the good books of any other are held. Once per record (id, added_at): a
library removed and added again is looked at again.

A tree download opens in two steps. First, off the loop (a tree of 10,000 files takes
seconds, and a loop that long silent is restarted as hung), ``prepare`` checks the selected
files not yet worked on (localdata.py: data in place is kept, a file another library holds
is copied) and then makes the tree's folders and sizes its files; ``open`` says "not yet"
until that is done. Then the books found are recorded as held and the download starts
with only the selected files' books wanted.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from services.peer import requestor_logic as rl
from services.peer.bitfield import Bitfield
from services.peer.library import Library, LibraryCache, LibraryError
from services.peer.localdata import CheckJob, CheckResult, check
from services.peer.partfile import TRANSIENT, DiskError, Found, HeldFile, PartFile, free_bytes, look, worth_a_look
from services.peer.signing import Trusted
from services.peer.state import LibraryRecord, State, Status
from services.peer.treefiles import TreeFiles
from services.peer.writer import Outcome, Written, land
from services.runtime.logs import get_logger

log = get_logger("events")
RETRY_FIRST = 1.0  # seconds before a download failed by the disk is tried again ...
RETRY_MOST = 60.0  # ... doubling up to this while it keeps failing
DATA = "data folder"  # the DiskWaits key of state.db and <data>/libs/
_DB_TRANSIENT = {sqlite3.SQLITE_FULL: errno.ENOSPC, sqlite3.SQLITE_IOERR: errno.EIO}
Added = tuple[str, float]  # a download: its library's id and when it was added


def added(record: LibraryRecord) -> Added:
    return record.id, record.added_at


@dataclass(frozen=True)
class Opened:
    """A download ready to start: its library, the books held, and (of a selection) the books wanted."""

    library: Library
    have: Bitfield
    wanted: Bitfield | None = None  # None: every book


def prepare(job: CheckJob, selected: list[int]) -> CheckResult:
    """In the worker thread: check the job's files, then make the tree's folders and selected files."""
    result = check(job)
    try:
        TreeFiles.create(job.library, job.root, selected).close()
    except DiskError as exc:
        result.disk_error = exc
    return result


@dataclass
class Wait:
    reason: str
    backoff: float
    retry_at: float
    trying: bool = False  # a retry went ahead; kept for its backoff until a write succeeds


@dataclass
class DiskWaits:
    """What waits for the disk, keyed by download (or DATA), and when to try it again: pure state fed ``now``."""

    first: float = RETRY_FIRST
    most: float = RETRY_MOST
    waits: dict[str, Wait] = field(default_factory=dict)
    last_reason: str = ""

    def failed(self, key: str, reason: str, now: float) -> Wait:
        """The disk failed ``key``: wait ``first``, or twice the last wait if it failed before (up to ``most``)."""
        before = self.waits.get(key)
        backoff = self.first if before is None else min(self.most, before.backoff * 2)
        self.waits[key] = wait = Wait(reason, backoff, now + backoff)
        self.last_reason = reason
        return wait

    def may_try(self, key: str, now: float) -> bool:
        """Nothing waits under ``key``, or its wait is over (or a retry is already under way)."""
        wait = self.waits.get(key)
        return wait is None or wait.trying or now >= wait.retry_at

    def going(self, key: str) -> None:
        """A retry went ahead (the file opened): the key waits for a write to succeed, not for time."""
        wait = self.waits.get(key)
        if wait is not None:
            wait.trying = True

    def worked(self, key: str) -> bool:
        """A write under ``key`` succeeded: it waits no more. True if it was waiting."""
        return self.waits.pop(key, None) is not None

    def forget(self, key: str) -> None:
        self.waits.pop(key, None)

    def detail(self) -> str:
        """The newest reason while anything waits, else the last one, said to be over ("" if none ever)."""
        waiting = sum(1 for wait in self.waits.values() if not wait.trying)
        if waiting:
            return self.last_reason + (f" ({waiting} waiting)" if waiting > 1 else "")
        return f"recovered; last disk error: {self.last_reason.split('; ')[0]}" if self.last_reason else ""


def disk_reason(code: int | None, where: Path, error: str) -> str:
    """What the user reads: what is wrong where, and what makes it go on."""
    folder = where if where.is_dir() else where.parent
    if code == errno.ENOSPC:
        return f"disk full: {free_bytes(folder)} bytes free on {folder}; free space and it resumes"
    if code == errno.EDQUOT:
        return f"disk quota exceeded on {folder}; free space or raise the quota and it resumes"
    return f"I/O error on {folder} ({error}); check the disk (dmesg), it resumes once writes work again"


class Storage:
    def __init__(self, state: State) -> None:
        self.state = state
        self.db_path = state.path
        self.files: dict[bytes, PartFile | TreeFiles | HeldFile] = {}
        self.selections: dict[bytes, tuple[str, ...]] = {}  # of each open download, the selection it opened with
        self.checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="localdata")
        self.checking: dict[str, Future[CheckResult]] = {}
        # A download is known below by its record's (id, added_at): a library removed and added again is another
        # download, whose place is checked again.
        self.checked: set[tuple[Added, int]] = set()  # (download, file) checked by this process
        self.looking: dict[str, Future[Found]] = {}  # single-file downloads whose place is being checked
        self.looked: set[Added] = set()  # ... and those whose place this process checked (or had nothing to check)
        self.prepared: set[tuple[Added, tuple[str, ...]]] = set()  # (download, selection) whose files were made
        self.libraries = LibraryCache()  # libraries opened, and those of other downloads holding files
        self.waits = DiskWaits()
        self.unsaved_progress: dict[str, tuple[Bitfield, int, int]] = {}
        self.unsaved_seeding: dict[str, Path] = {}
        self.marked: set[str] = set()  # marked error here while waiting: a resume by the user retries at once
        self.seen: set[str] = set()  # an error left by an earlier run is tried once
        self.write_errors: dict[bytes, DiskError] = {}  # a failed book write, for the Fail that follows it

    # -- which downloads to open ---------------------------------------------------------------
    def ready(self, record: LibraryRecord, now: float) -> bool:
        """Whether the Requestor should open this download (not downloading yet) now."""
        key, first = record.id, record.id not in self.seen
        self.seen.add(key)
        if key in self.unsaved_seeding:
            return False  # complete; state.db does not know yet
        if record.status is Status.DOWNLOADING:
            if key in self.marked:  # the user resumed it
                self.marked.discard(key)
                return True
            return self.waits.may_try(key, now)
        if record.status is Status.ERROR:
            return self.waits.may_try(key, now) if key in self.waits.waits else first
        self.waits.forget(key)  # paused or removed meanwhile
        self.marked.discard(key)
        return False

    def open(self, record: LibraryRecord, now: float, trusted: Trusted | None = None) -> Opened | None:
        """Open the download's library and partial file (or tree); None (and the download failed, waiting, or
        its local data being checked) if it cannot start yet, or if ``trusted`` publishers refuse the library."""
        try:
            library = self.libraries.read(record.lib_path)  # parsed once while a tree's check runs
        except LibraryError as exc:
            self._failed(record.id, str(exc), "fix or replace the .lib file, then `emma resume`", now)
            return None
        refusal = trusted.refusal(library.publisher_key) if trusted is not None else ""
        if refusal:
            self._failed(record.id, refusal, "after that, `emma resume`", now)
            return None
        opened = Opened(library, record.have)
        part: PartFile | TreeFiles | HeldFile
        try:
            if library.tree is None:
                file_opened = self._open_file(record, library, now)
                if file_opened is None:
                    return None
                part, opened = file_opened
            else:
                tree_opened = self._open_tree(record, library, now)
                if tree_opened is None:
                    return None
                part, opened = tree_opened
        except DiskError as exc:
            self._disk_failed(record.id, exc, now)
            return None
        if record.status is not Status.DOWNLOADING and not self._save(
                partial(self.state.set_status, record.id, Status.DOWNLOADING), now):
            part.close()
            self.waits.failed(record.id, self.waits.last_reason, now)
            return None
        self.marked.discard(record.id)
        self.waits.going(record.id)
        self.files[library.id] = part
        self.selections[library.id] = record.only
        return opened

    def _open_file(self, record: LibraryRecord, library: Library, now: float
                   ) -> tuple[PartFile | HeldFile, Opened] | None:
        """A single file's partial file, once what its place holds is checked (None until then): a download with
        nothing held, where a file of the library's size stands, first has it read off the loop (``look``);
        DiskError if the partial file cannot be made."""
        have = Bitfield(library.books, record.have.to_bytes())
        pending = self.looking.get(record.id)
        if pending is None and added(record) not in self.looked:
            if not have and worth_a_look(library, record.stuff_path):
                self.looking[record.id] = self.checker.submit(look, library, record.stuff_path)
                log.info("local_file_checking", library=record.id, path=str(record.stuff_path))
                return None
            self.looked.add(added(record))
        if pending is not None:
            if not pending.done():
                return None
            del self.looking[record.id]
            held = self._looked(record, library, pending, have, now)
            if held is not None:
                return held, Opened(library, have)
        return PartFile.open(library, record.stuff_path), Opened(library, have)

    def _looked(self, record: LibraryRecord, library: Library, done: Future[Found], have: Bitfield, now: float
                ) -> HeldFile | None:
        """A look ended: its good books are held (saved to state.db at once); the complete file it found, if any.
        Raises the DiskError that kept books from being copied into the partial file (the look is made again)."""
        try:
            found = done.result()
        except Exception as exc:  # a bug, not the disk: the books are fetched instead
            log.error("local_file_check_failed", library=record.id, error=repr(exc))
            self.looked.add(added(record))
            return None
        if found.disk_error is not None:
            raise found.disk_error
        self.looked.add(added(record))
        for error in found.errors[:10]:
            log.warning("local_data_unreadable", library=record.id, error=error, hint="its books are fetched instead")
        fresh = [book for book in found.good if have.add(book)]
        if found.read:
            log.info("local_file_checked", library=record.id, read=[str(path) for path in found.read],
                     books_kept=len(found.good), books_copied=found.copied,
                     adopted=str(found.adopted) if found.adopted else None)
        if fresh:
            self._progress(record.id, have, record.downloaded, record.fetched, now)
        return HeldFile(library, found.adopted) if found.adopted is not None else None

    def _open_tree(self, record: LibraryRecord, library: Library, now: float
                   ) -> tuple[TreeFiles, Opened] | None:
        """The tree's files once its local data is checked (None until then); DiskError if they cannot be made."""
        tree = library.tree
        if tree is None:
            raise ValueError("not a tree library")
        selected = tree.select(record.only)
        have = Bitfield(library.books, record.have.to_bytes())
        pending = self.checking.get(record.id)
        if pending is None and (added(record), record.only) not in self.prepared:
            todo = [i for i in selected if (added(record), i) not in self.checked and tree.sizes[i]
                    and not any(book in have for book in tree.books_of(i))]
            job = CheckJob(library, record.stuff_path, todo, self._sources(record) if todo else {})
            self.checking[record.id] = self.checker.submit(prepare, job, selected)
            if todo:
                log.info("local_data_checking", library=record.id, files=len(todo), sources=len(job.sources))
            return None
        if pending is not None:
            if not pending.done():
                return None
            del self.checking[record.id]
            self._checked(record, pending, have, now)
            self.prepared.add((added(record), record.only))
        files = TreeFiles(library, record.stuff_path, writable=True)
        wanted = Bitfield(library.books)
        for book in tree.books_of_files(selected):
            wanted.add(book)
        return files, Opened(library, have, None if record.only == () else wanted)

    def _checked(self, record: LibraryRecord, done: Future[CheckResult], have: Bitfield, now: float) -> None:
        """A check ended: its good books are held (saved to state.db at once) and its files never checked again.
        Raises the DiskError that kept the tree's files from being made."""
        try:
            result = done.result()
        except Exception as exc:  # a bug, not the disk: the books are fetched instead
            log.error("local_data_check_failed", library=record.id, error=repr(exc))
            raise DiskError(None, f"cannot prepare {record.stuff_path}: {exc!r}", record.stuff_path) from exc
        if result.disk_error is not None:
            raise result.disk_error
        self.checked.update((added(record), index) for index in result.files)
        if not result.files:
            return
        fresh = [book for book in result.good if have.add(book)]
        for error in result.errors[:10]:
            log.warning("local_data_unreadable", library=record.id, error=error,
                        hint="its books are fetched instead")
        log.info("local_data_checked", library=record.id, files=len(result.files), books_kept=len(fresh),
                 files_in_place=result.kept, files_copied=result.copied)
        if fresh:
            self._progress(record.id, have, record.downloaded, record.fetched, now)

    def _sources(self, record: LibraryRecord) -> dict[bytes, Path]:
        """BLAKE3 roots of the complete files of the other tree libraries this player holds, and where they are."""
        sources: dict[bytes, Path] = {}
        for other in self.state.all():
            if other.id == record.id or other.status is Status.ERROR:
                continue
            try:
                library = self.libraries.read(other.lib_path)
            except LibraryError:
                continue
            tree = library.tree
            if tree is None or other.have.size != library.books:
                continue
            for index in range(len(tree)):
                books = tree.books_of(index)
                if tree.sizes[index] and all(book in other.have for book in books):
                    sources.setdefault(tree.root(index), other.stuff_path / tree.paths[index])
        return sources

    def selection_changed(self, record: LibraryRecord) -> bool:
        """Whether an open download's selection of files is no longer the one it opened with."""
        library_id = bytes.fromhex(record.id)
        return library_id in self.selections and self.selections[library_id] != record.only

    def guard(self, work: Callable[[], None], now: float) -> None:
        """Run ``work`` (which writes in the data folder) unless that folder waits; a full disk makes it wait."""
        if not self.waits.may_try(DATA, now):
            return
        try:
            work()
        except (OSError, sqlite3.Error) as exc:
            if not self._data_failed(exc, now):
                raise
            return
        self._data_worked()

    # -- books ---------------------------------------------------------------------------------
    def sync_fds(self, library_id: bytes) -> list[int]:
        """Descriptors to fdatasync for the download's next batch (the Syncer closes them)."""
        return self.files[library_id].sync_fds()

    def land(self, action: rl.Land) -> Written:
        part = self.files[action.library_id]
        written = land(part.library, action.book, action.endpoint, action.payload, part)
        if written.outcome is Outcome.WRITTEN:
            if self.waits.worked(action.library_id.hex()):
                log.info("disk_recovered", library=action.library_id.hex(), path=str(part.path))
        elif written.outcome is Outcome.DISK_ERROR:
            self.write_errors[action.library_id] = DiskError(written.errno, written.error, part.path)
        return written

    def synced(self, library_id: bytes, error: str, now: float) -> None:
        """An fdatasync came back: a failure is shown until a sync of that download succeeds."""
        key = f"sync {library_id.hex()}"
        part = self.files.get(library_id)
        if not error:
            self.waits.worked(key)
        elif part is not None:
            self.waits.failed(key, f"cannot sync {part.path} ({error}); check the disk (dmesg), "
                                   f"its books are synced again", now)

    # -- progress and endings ------------------------------------------------------------------
    def persist(self, action: rl.Persist, now: float) -> None:
        self._progress(action.library_id.hex(), action.have, action.downloaded, action.fetched, now)

    def stop(self, action: rl.Stop, now: float) -> None:
        part = self.files.pop(action.library_id)
        self.selections.pop(action.library_id, None)
        self.write_errors.pop(action.library_id, None)
        self.waits.forget(f"sync {action.library_id.hex()}")
        try:
            part.sync()
        except DiskError as exc:
            log.error("sync_failed", library=action.library_id.hex(), error=str(exc),
                      hint="check the disk; books since the last sync will be fetched again")
            return
        finally:
            part.close()
        self._progress(action.library_id.hex(), action.have, action.downloaded, action.fetched, now)

    def finish(self, action: rl.Finish, now: float) -> Path | None:
        """Rename the complete file to its final name and seed it; None (and the download failed or waiting)
        if it cannot be."""
        part = self.files.pop(action.library_id)
        self.selections.pop(action.library_id, None)
        key = action.library_id.hex()
        try:
            final = part.finish()
        except DiskError as exc:
            self._disk_failed(key, exc, now)
            return None
        finally:
            part.close()
        if not self._save(partial(self.state.set_status, key, Status.SEEDING, final), now):
            self.unsaved_seeding[key] = final
        log.info("download_complete", library=key, name=part.library.name, path=str(final),
                 fetched=action.fetched, bad_books=action.bad_books)
        return final

    def fail(self, action: rl.Fail, now: float) -> None:
        error = self.write_errors.pop(action.library_id, None)
        if error is not None:
            self._disk_failed(action.library_id.hex(), error, now)
        else:
            self._failed(action.library_id.hex(), action.reason, "free disk space, then `emma resume`", now)

    def retry(self, now: float) -> None:
        """Make the state.db writes that waited for space, if it is time to try again."""
        for key, (have, downloaded, fetched) in list(self.unsaved_progress.items()):
            if not self._save(partial(self.state.save_progress, key, have, downloaded, fetched), now):
                return
            del self.unsaved_progress[key]
        for key, final in list(self.unsaved_seeding.items()):
            if not self._save(partial(self.state.set_status, key, Status.SEEDING, final), now):
                return
            del self.unsaved_seeding[key]

    def waiting(self) -> bool:
        """Whether a download waits for something that comes with time (a disk wait, a local check, a retry
        of a write, a resume): the Requestor then reads state.db's records every look, not only on news."""
        return bool(self.waits.waits or self.checking or self.looking or self.unsaved_seeding or self.unsaved_progress
                    or self.marked)

    def detail(self) -> str:
        """For the heartbeat: what waits for the disk and why, or the last disk error."""
        return self.waits.detail()

    # -- failures ------------------------------------------------------------------------------
    def _progress(self, key: str, have: Bitfield, downloaded: int, fetched: int, now: float) -> None:
        if self._save(partial(self.state.save_progress, key, have, downloaded, fetched), now):
            self.unsaved_progress.pop(key, None)
        else:
            self.unsaved_progress[key] = (have, downloaded, fetched)

    def _disk_failed(self, key: str, exc: DiskError, now: float) -> None:
        if not exc.transient:
            self._failed(key, str(exc), "check the downloads folder exists and may be written, then `emma resume`",
                         now)
            return
        wait = self.waits.failed(key, disk_reason(exc.errno, exc.where or self.db_path, exc.strerror or str(exc)),
                                 now)
        log.error("download_waiting_for_disk", library=key, error=str(exc), reason=wait.reason,
                  retry_in=wait.backoff)
        if self._save(partial(self.state.set_status, key, Status.ERROR, reason=wait.reason), now):
            self.marked.add(key)

    def _failed(self, key: str, error: str, hint: str, now: float) -> None:
        log.error("download_failed", library=key, error=error, hint=hint)
        self._save(partial(self.state.set_status, key, Status.ERROR, reason=f"{error}; {hint}"), now)

    def _save(self, write: Callable[[], None], now: float) -> bool:
        """Make a state.db write, unless state.db waits for space; False when it was not made."""
        if not self.waits.may_try(DATA, now):
            return False
        try:
            write()
        except sqlite3.Error as exc:
            if not self._data_failed(exc, now):
                raise
            return False
        self._data_worked()
        return True

    def _data_failed(self, exc: OSError | sqlite3.Error, now: float) -> bool:
        """A write in the data folder failed: True (and it waits) if waiting may cure it."""
        code: int | None = None
        where = self.db_path
        if isinstance(exc, sqlite3.Error):
            code = _DB_TRANSIENT.get((getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF) or _db_errno(str(exc))
        else:
            code = exc.errno
            where = Path(exc.filename) if isinstance(exc.filename, str) else where
        if code not in TRANSIENT:
            return False
        wait = self.waits.failed(DATA, disk_reason(code, where, str(exc)), now)
        log.error("data_folder_unwritable", error=str(exc), reason=wait.reason, retry_in=wait.backoff)
        return True

    def _data_worked(self) -> None:
        if self.waits.worked(DATA):
            log.info("data_folder_writable_again", path=str(self.db_path.parent))

    def close(self) -> None:
        self.checker.shutdown(wait=True, cancel_futures=True)
        for part in self.files.values():
            part.close()
        self.files.clear()


def _db_errno(message: str) -> int:
    """sqlite3 errors of older Pythons carry no code: tell a full disk or an I/O error by its message."""
    if "disk is full" in message:
        return errno.ENOSPC
    return errno.EIO if "disk I/O error" in message else 0
