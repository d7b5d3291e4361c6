"""The Requestor's disk actions on real files in tmp_path: open, land, persist, stop, finish, fail."""

from __future__ import annotations

import os
import random

import pytest

from services.peer import requestor_logic as rl
from services.peer.bitfield import Bitfield
from services.peer.library import MIN_BOOK_SIZE, HashAlgorithm, Library, hash_bytes, make_library
from services.peer.partfile import PartFile, partial_path
from services.peer.state import LibraryRecord, State, Status
from services.peer.storage import Storage
from services.peer.writer import Outcome
from services.runtime.config import Config
from tests.unit.conftest import recorded_download

BOOK = MIN_BOOK_SIZE
NOW = 0.0
DATA = random.Random(5).randbytes(2 * BOOK + 300)


def make() -> Library:
    hashes = b"".join(hash_bytes(HashAlgorithm.BLAKE3, DATA[i : i + BOOK]) for i in range(0, len(DATA), BOOK))
    return make_library(name="s.bin", size=len(DATA), book_size=BOOK, hash_algorithm=HashAlgorithm.BLAKE3,
                        book_hashes=hashes, hubs=(), created_at=0, creator="test")


LIB = make()


def book_of(index: int) -> bytes:
    return DATA[index * BOOK : (index + 1) * BOOK]


@pytest.fixture
def record(config: Config, state: State) -> LibraryRecord:
    return recorded_download(config, state, LIB)


def held(state: State) -> tuple[list[int], Status]:
    found = state.get(LIB.id_hex)
    assert found is not None
    return found.have.indices(), found.status


def part_fd(storage: Storage) -> int:
    part = storage.files[LIB.id]
    assert isinstance(part, PartFile)
    return part.fd


def have(*books: int) -> Bitfield:
    field = Bitfield(LIB.books)
    for book in books:
        field.add(book)
    return field


def test_open_creates_the_partial_file(storage: Storage, record: LibraryRecord) -> None:
    opened = storage.open(record, NOW)
    assert opened is not None and opened.library == LIB and opened.wanted is None
    assert partial_path(record.stuff_path).stat().st_size == LIB.size


def test_a_library_that_cannot_be_read_fails_the_download(storage: Storage, record: LibraryRecord,
                                                          state: State) -> None:
    record.lib_path.write_bytes(b"EMMALIB\ngarbage")
    assert storage.open(record, NOW) is None
    assert held(state) == ([], Status.ERROR)


def test_land_verifies_then_writes(storage: Storage, record: LibraryRecord) -> None:
    storage.open(record, NOW)
    good = storage.land(rl.Land(LIB.id, 1, "tcp://a:1", book_of(1)))
    bad = storage.land(rl.Land(LIB.id, 0, "tcp://a:1", book_of(1)))
    assert (good.outcome, bad.outcome) == (Outcome.WRITTEN, Outcome.BAD_HASH)
    assert os.pread(part_fd(storage), BOOK, BOOK) == book_of(1)


def test_persist_and_stop_save_progress(storage: Storage, record: LibraryRecord, state: State) -> None:
    storage.open(record, NOW)
    storage.persist(rl.Persist(LIB.id, have(0), BOOK, 1), NOW)
    assert held(state) == ([0], Status.DOWNLOADING)
    storage.stop(rl.Stop(LIB.id, have(0, 2), BOOK + 300, 2, "paused"), NOW)
    assert held(state)[0] == [0, 2]
    assert LIB.id not in storage.files


def test_a_stop_whose_sync_fails_persists_nothing(storage: Storage, record: LibraryRecord, state: State) -> None:
    storage.open(record, NOW)
    os.close(part_fd(storage))  # the sync will fail: nothing may be marked held
    storage.stop(rl.Stop(LIB.id, have(0, 1), 2 * BOOK, 2, "shutdown"), NOW)
    assert held(state) == ([], Status.DOWNLOADING)


def test_finish_renames_and_seeds(storage: Storage, record: LibraryRecord, state: State) -> None:
    storage.open(record, NOW)
    for book in range(LIB.books):
        storage.land(rl.Land(LIB.id, book, "tcp://a:1", book_of(book)))
    final = storage.finish(rl.Finish(LIB.id, 3, 0), NOW)
    assert final == record.stuff_path and final.read_bytes() == DATA
    assert held(state)[1] is Status.SEEDING


def test_a_finish_that_cannot_rename_fails_the_download(storage: Storage, record: LibraryRecord,
                                                        state: State) -> None:
    storage.open(record, NOW)
    partial_path(record.stuff_path).unlink()
    assert storage.finish(rl.Finish(LIB.id, 3, 0), NOW) is None
    assert held(state)[1] is Status.ERROR


def test_fail_marks_the_download_failed(storage: Storage, record: LibraryRecord, state: State) -> None:
    storage.open(record, NOW)
    storage.fail(rl.Fail(LIB.id, "cannot write book: No space left on device"), NOW)
    assert held(state)[1] is Status.ERROR
