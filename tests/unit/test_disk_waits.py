"""A disk that fails, then works again, on a fake clock: the download waits with its reason, is
tried again on a doubling backoff, and goes on by itself; state.db writes wait the same way.

``Disk`` stands in for the downloads folder (its next opens or writes fail with an errno) and
``FullState`` for a state.db on a full data folder; the files themselves are real, in tmp_path.
"""

from __future__ import annotations

import errno
import os
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.peer import catalog
from services.peer import requestor_logic as rl
from services.peer import storage as storage_mod
from services.peer.bitfield import Bitfield
from services.peer.library import MIN_BOOK_SIZE, HashAlgorithm, Library, hash_bytes, make_library, write_library
from services.peer.partfile import DiskError, PartFile
from services.peer.state import LibraryRecord, State, Status
from services.peer.storage import DATA, RETRY_FIRST, RETRY_MOST, DiskWaits, Storage
from services.peer.writer import Outcome, Written
from services.runtime.config import Config

BOOK = MIN_BOOK_SIZE
DATA_BYTES = random.Random(3).randbytes(2 * BOOK + 10)


def make() -> Library:
    hashes = b"".join(hash_bytes(HashAlgorithm.BLAKE3, DATA_BYTES[i : i + BOOK])
                      for i in range(0, len(DATA_BYTES), BOOK))
    return make_library(name="w.bin", size=len(DATA_BYTES), book_size=BOOK, hash_algorithm=HashAlgorithm.BLAKE3,
                        book_hashes=hashes, hubs=(), created_at=0, creator="test")


LIB = make()
KEY = LIB.id_hex


# --- DiskWaits alone -------------------------------------------------------------------------------


def test_the_wait_doubles_from_one_second_to_a_minute() -> None:
    waits, now, backoffs = DiskWaits(), 0.0, []
    for _ in range(9):
        wait = waits.failed("a", "disk full", now)
        backoffs.append(wait.backoff)
        assert not waits.may_try("a", wait.retry_at - 0.01)
        assert waits.may_try("a", wait.retry_at)
        now = wait.retry_at
    assert (RETRY_FIRST, RETRY_MOST) == (1.0, 60.0)
    assert backoffs == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_a_retry_under_way_waits_for_a_write_not_for_time_and_keeps_its_backoff() -> None:
    waits = DiskWaits()
    waits.failed("a", "I/O error", 0.0)
    waits.going("a")
    assert waits.may_try("a", 0.1)
    assert waits.failed("a", "I/O error", 1.0).backoff == 2.0  # the file opened, the write failed again
    waits.going("a")
    assert waits.worked("a") and not waits.worked("a")
    assert waits.failed("a", "I/O error", 5.0).backoff == 1.0  # a fresh failure after a success


def test_keys_wait_apart() -> None:
    waits = DiskWaits()
    waits.failed("a", "disk full", 0.0)
    assert waits.may_try("b", 0.0) and not waits.may_try("a", 0.0)


def test_detail_says_what_waits_then_what_it_was() -> None:
    waits = DiskWaits()
    assert waits.detail() == ""
    waits.failed("a", "disk full: 0 bytes free on /d; free space and it resumes", 0.0)
    assert waits.detail() == "disk full: 0 bytes free on /d; free space and it resumes"
    waits.failed("b", "disk full: 0 bytes free on /d; free space and it resumes", 0.0)
    assert waits.detail().endswith("it resumes (2 waiting)")
    waits.worked("a")
    waits.going("b")
    assert waits.detail() == "recovered; last disk error: disk full: 0 bytes free on /d"


# --- Storage on a disk that fails, then works ------------------------------------------------------


class Disk:
    """The downloads folder: the next ``fail_opens`` opens fail with ``code``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fail_opens = 0
        self.code = errno.ENOSPC
        real = PartFile.open

        def open_part(library: Library, stuff_path: Path) -> PartFile:
            if self.fail_opens:
                self.fail_opens -= 1
                raise DiskError(self.code, f"cannot reserve {library.size} bytes: {errno.errorcode[self.code]}",
                                stuff_path.parent)
            return real(library, stuff_path)

        monkeypatch.setattr(PartFile, "open", staticmethod(open_part))


class FullState(State):
    """state.db on a data folder that is full while ``full`` is set."""

    full = False
    attempts = 0

    def _write(self, method: Any, *args: Any) -> None:
        self.attempts += 1
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        method(*args)

    def save_progress(self, library_id: str, have: Bitfield, downloaded: int, fetched: int) -> None:
        self._write(super().save_progress, library_id, have, downloaded, fetched)

    def set_status(self, library_id: str, status: Status, stuff_path: Path | None = None, reason: str = "") -> None:
        self._write(super().set_status, library_id, status, stuff_path, reason)


@pytest.fixture
def state(config: Config) -> Iterator[FullState]:
    db = FullState(config.state_db)
    lib_path = config.libs_dir / LIB.file_name
    write_library(LIB, lib_path)
    catalog.record_download(db, config, LIB, lib_path)
    yield db
    db.close()


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    return Disk(monkeypatch)


def record_of(state: State) -> LibraryRecord:
    found = state.get(KEY)
    assert found is not None
    return found


def reload(storage: Storage, state: State, now: float) -> bool:
    """What the Requestor's reload does for one download: True if it is open now."""
    record = record_of(state)
    return storage.ready(record, now) and storage.open(record, now) is not None


def opened_at(storage: Storage, state: State, times: list[float]) -> list[float]:
    return [now for now in times if LIB.id not in storage.files and reload(storage, state, now)]


def book(index: int) -> bytes:
    return DATA_BYTES[index * BOOK : (index + 1) * BOOK]


def test_a_full_disk_makes_the_download_wait_with_its_reason_then_it_goes_on_by_itself(
        storage: Storage, state: State, disk: Disk, config: Config) -> None:
    disk.fail_opens = 2
    assert not reload(storage, state, 0.0)
    assert record_of(state).status is Status.ERROR
    assert record_of(state).reason == storage.detail()  # what `emma downloads` shows of it
    downloads = config.downloads_dir
    assert storage.detail().startswith("disk full: ")
    assert storage.detail().endswith(f" bytes free on {downloads}; free space and it resumes")
    # tried at 1 s (fails: the next wait is 2 s), then at 3 s, when the disk has room again
    assert opened_at(storage, state, [0.25, 0.5, 0.99, 1.0, 1.25, 2.0, 2.99, 3.0, 3.25]) == [3.0]
    assert (record_of(state).status, record_of(state).reason) == (Status.DOWNLOADING, "")
    written = storage.land(rl.Land(LIB.id, 0, "tcp://a:1", book(0)))
    assert written.outcome is Outcome.WRITTEN
    assert storage.waits.waits == {}
    assert storage.detail().startswith("recovered; last disk error: disk full: ")
    assert storage.detail().endswith(f" bytes free on {downloads}")


def test_writes_that_keep_failing_back_off_even_though_the_file_opens(storage: Storage, state: State,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_write(library: Library, index: int, peer: str, payload: Any, sink: Any) -> Written:
        return Written(library.id, index, peer, len(payload), Outcome.DISK_ERROR,
                       "cannot write book at offset 0: Input/output error", errno.EIO)

    monkeypatch.setattr(storage_mod, "land", failing_write)
    failed_at, now = [], 0.0
    for _ in range(4):
        while not reload(storage, state, now):
            now += 0.25
        failed_at.append(now)
        written = storage.land(rl.Land(LIB.id, 0, "tcp://a:1", book(0)))
        storage.fail(rl.Fail(LIB.id, written.error), now)  # what the logic answers to a disk error
        storage.stop(rl.Stop(LIB.id, Bitfield(LIB.books), 0, 0, "disk error"), now)
    assert failed_at == [0.0, 1.0, 3.0, 7.0]  # waits of 1, 2 and 4 s: each retry opened, each write failed
    assert storage.detail().startswith(f"I/O error on {record_of(state).stuff_path.parent} (")


def test_an_error_that_waiting_cannot_cure_waits_for_the_user(storage: Storage, state: State, disk: Disk) -> None:
    disk.fail_opens, disk.code = 1, errno.EACCES
    assert not reload(storage, state, 0.0)
    assert record_of(state).status is Status.ERROR
    assert record_of(state).reason.endswith(
        "; check the downloads folder exists and may be written, then `emma resume`")  # what and what to do
    assert storage.detail() == ""
    assert opened_at(storage, state, [1.0, 60.0, 3600.0]) == []
    state.set_status(KEY, Status.DOWNLOADING)  # `emma resume`
    assert reload(storage, state, 3600.5)


def test_a_resume_by_the_user_tries_at_once_and_a_pause_ends_the_wait(storage: Storage, state: State,
                                                                     disk: Disk) -> None:
    disk.fail_opens = 2
    assert not reload(storage, state, 0.0)
    state.set_status(KEY, Status.DOWNLOADING)  # `emma resume` while it waits
    assert not reload(storage, state, 0.1)  # tried at once (and failed again)
    state.set_status(KEY, Status.PAUSED)
    assert not reload(storage, state, 100.0)
    assert storage.waits.waits == {} and storage.detail().startswith("recovered; last disk error: disk full")


def test_an_error_left_by_an_earlier_run_is_tried_once(state: State) -> None:
    state.set_status(KEY, Status.ERROR)
    fresh = Storage(state)
    try:
        assert fresh.ready(record_of(state), 0.0)
        assert not fresh.ready(record_of(state), 100.0)
    finally:
        fresh.close()


# --- state.db on a full data folder ----------------------------------------------------------------


def test_progress_that_cannot_be_saved_is_kept_and_saved_when_space_returns(storage: Storage,
                                                                           state: FullState) -> None:
    assert reload(storage, state, 0.0)
    state.full = True
    storage.persist(rl.Persist(LIB.id, Bitfield.full(LIB.books), 3 * BOOK, 3), 0.0)
    assert storage.detail().startswith("disk full: ") and str(state_dir(state)) in storage.detail()
    attempts = state.attempts
    storage.persist(rl.Persist(LIB.id, Bitfield.full(LIB.books), 3 * BOOK, 3), 0.5)  # waits: not even tried
    storage.retry(0.9)
    assert state.attempts == attempts
    storage.retry(1.0)  # tried, still full: the next try is 2 s later
    assert state.attempts == attempts + 1
    state.full = False
    storage.retry(2.9)
    assert record_of(state).have.indices() == []
    storage.retry(3.0)
    assert record_of(state).have.indices() == list(range(LIB.books))
    assert storage.unsaved_progress == {} and DATA not in storage.waits.waits


def test_a_finished_download_whose_seeding_cannot_be_saved_is_never_opened_again(storage: Storage,
                                                                                state: FullState) -> None:
    assert reload(storage, state, 0.0)
    for index in range(LIB.books):
        storage.land(rl.Land(LIB.id, index, "tcp://a:1", book(index)))
    state.full = True
    final = storage.finish(rl.Finish(LIB.id, 3, 0), 0.0)
    assert final is not None and final.read_bytes() == DATA_BYTES
    assert record_of(state).status is Status.DOWNLOADING
    assert opened_at(storage, state, [0.5, 1.0, 10.0]) == []
    state.full = False
    storage.retry(100.0)
    assert record_of(state).status is Status.SEEDING and record_of(state).stuff_path == final


def test_importing_a_library_into_a_full_data_folder_waits_and_an_unexpected_error_still_raises(
        storage: Storage) -> None:
    def full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/libs/x.lib")

    storage.guard(full, 0.0)
    assert storage.detail().startswith("disk full: ")
    assert storage.detail().endswith(" bytes free on /data/libs; free space and it resumes")
    ran = []
    storage.guard(lambda: ran.append(0.5), 0.5)
    storage.guard(lambda: ran.append(1.0), 1.0)
    assert ran == [1.0] and DATA not in storage.waits.waits

    def broken() -> None:
        raise OSError(errno.EACCES, "Permission denied", "/data/libs")

    with pytest.raises(PermissionError):
        storage.guard(broken, 2.0)


def state_dir(state: State) -> Path:
    return state.path.parent


def test_a_reservation_that_fails_leaves_no_sparse_file_to_pass_for_reserved(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.posix_fallocate

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(DiskError) as failed:
        PartFile.open(LIB, tmp_path / LIB.name)
    assert failed.value.transient and failed.value.where == tmp_path / f"{LIB.name}.part"
    assert (tmp_path / f"{LIB.name}.part").stat().st_size == 0  # so the next open reserves again
    reserved = []

    def room(fd: int, offset: int, length: int) -> None:
        reserved.append(length)
        real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", room)
    PartFile.open(LIB, tmp_path / LIB.name).close()
    assert reserved == [LIB.size]
