"""One download on real files in tmp_path: verify, write, sync, strike, the partial file, finish."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.peer import catalog
from services.peer.bitfield import Bitfield
from services.peer.download import (
    BAN_THRESHOLD,
    DiskError,
    Download,
    final_path,
    open_partial,
    partial_path,
    write_book,
)
from services.peer.library import MIN_BOOK_SIZE, HashAlgorithm, Library, hash_bytes, make_library
from services.peer.picker import Picker
from services.peer.state import LibraryRecord, State, Status
from services.runtime.config import Config

BOOK = MIN_BOOK_SIZE
SIZE = 2 * BOOK + 1000
DATA = random.Random(7).randbytes(SIZE)


def book_of(index: int, data: bytes = DATA) -> bytes:
    return data[index * BOOK : (index + 1) * BOOK]


def make(data: bytes = DATA, name: str = "movie.mkv", algorithm: HashAlgorithm = HashAlgorithm.BLAKE3) -> Library:
    hashes = b"".join(hash_bytes(algorithm, data[i : i + BOOK]) for i in range(0, len(data), BOOK))
    return make_library(name=name, size=len(data), book_size=BOOK, hash_algorithm=algorithm,
                        book_hashes=hashes, hubs=(), created_at=0, creator="test")


LIB = make()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    conf = Config(data_dir=tmp_path / "data", values={})
    conf.ensure_dirs()
    return conf


@pytest.fixture
def state(config: Config) -> Iterator[State]:
    db = State(config.state_db)
    yield db
    db.close()


def recorded(state: State, config: Config, library: Library = LIB) -> LibraryRecord:
    catalog.record_download(state, config, library, config.libs_dir / library.file_name)
    found = state.get(library.id_hex)
    assert found is not None
    return found


@pytest.fixture
def download(state: State, config: Config) -> Iterator[Download]:
    record = recorded(state, config)
    fd, part = open_partial(LIB, record)
    result = Download(library=LIB, record=record, picker=Picker(Bitfield(LIB.books)), fd=fd, part_path=part)
    yield result
    result.close()


def land(download: Download, book: int, peer: str = "A") -> None:
    """What the requestor does with a good book: write it, then tell the picker."""
    payload = book_of(book)
    assert download.library.verify_book(book, payload)
    write_book(download.fd, download.library.book_span(book)[0], payload)
    download.record_written(book, len(payload))
    download.picker.received(book, peer)


# --- the partial file -----------------------------------------------------------------------------


def test_open_partial_preallocates_name_part(state: State, config: Config) -> None:
    record = recorded(state, config)
    fd, part = open_partial(LIB, record)
    try:
        assert part == config.downloads_dir / "movie.mkv.part"
        assert os.fstat(fd).st_size == SIZE
        assert os.stat(part).st_blocks * 512 >= SIZE  # really reserved, not sparse
    finally:
        os.close(fd)


def test_open_partial_again_keeps_what_was_written(state: State, config: Config) -> None:
    record = recorded(state, config)
    fd, _ = open_partial(LIB, record)
    os.pwrite(fd, b"kept", BOOK)
    os.close(fd)
    fd, _ = open_partial(LIB, record)
    try:
        assert os.pread(fd, 4, BOOK) == b"kept"
    finally:
        os.close(fd)


def test_open_partial_trims_a_partial_file_of_the_wrong_size(state: State, config: Config) -> None:
    record = recorded(state, config)
    part = partial_path(record.stuff_path)
    part.write_bytes(b"x" * (SIZE + 5000))
    fd, _ = open_partial(LIB, record)
    try:
        assert os.fstat(fd).st_size == SIZE
    finally:
        os.close(fd)


def test_open_partial_where_no_folder_can_be_made_is_a_disk_error(tmp_path: Path, state: State,
                                                                   config: Config) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    config.set("paths.downloads", str(blocker / "downloads"))
    with pytest.raises(DiskError, match="cannot create"):
        open_partial(LIB, recorded(state, config))


def test_open_partial_of_an_empty_library(state: State, config: Config) -> None:
    empty = make(b"", name="empty.txt")
    fd, part = open_partial(empty, recorded(state, config, empty))
    try:
        assert part.name == "empty.txt.part" and os.fstat(fd).st_size == 0
    finally:
        os.close(fd)


# --- verify ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", list(HashAlgorithm))
def test_verify_accepts_exactly_the_right_bytes(algorithm: HashAlgorithm, state: State, config: Config) -> None:
    library = make(algorithm=algorithm)
    record = recorded(state, config, library)
    fd, part = open_partial(library, record)
    dl = Download(library=library, record=record, picker=Picker(Bitfield(library.books)), fd=fd, part_path=part)
    try:
        assert [dl.library.verify_book(i, book_of(i)) for i in range(3)] == [True, True, True]
        assert dl.library.verify_book(1, memoryview(book_of(1)))
    finally:
        dl.close()


@pytest.mark.parametrize(
    ("book", "payload"),
    [
        (0, book_of(1)),  # another book's bytes
        (0, b"\x00" + book_of(0)[1:]),  # one byte flipped
        (0, book_of(0)[:-1]),  # too short
        (2, book_of(2) + b"\x00"),  # too long
        (2, b""),
        (3, b"x" * 100),  # no such book
        (-1, book_of(0)),
    ],
)
def test_verify_refuses_anything_else(download: Download, book: int, payload: bytes) -> None:
    assert not download.library.verify_book(book, payload)


# --- write and sync ---------------------------------------------------------------------------------------


def test_write_puts_the_book_at_its_offset(download: Download) -> None:
    land(download, 2)
    land(download, 0)
    content = download.part_path.read_bytes()
    assert content[2 * BOOK :] == book_of(2)
    assert content[:BOOK] == book_of(0)
    assert content[BOOK : 2 * BOOK] == b"\x00" * BOOK
    assert (download.downloaded, download.fetched, download.unsynced) == (BOOK + 1000, 2, [2, 0])


def persisted(state: State) -> tuple[list[int], int, int]:
    record = state.get(LIB.id_hex)
    assert record is not None
    return record.have.indices(), record.downloaded, record.fetched


def test_nothing_is_persisted_before_a_sync(download: Download, state: State) -> None:
    land(download, 1)
    assert persisted(state) == ([], 0, 0)
    assert download.durable.indices() == []


def test_a_sync_batch_persists_its_books_when_it_ends(download: Download, state: State) -> None:
    land(download, 0)
    land(download, 2)
    assert download.begin_sync()
    assert (download.syncing, download.unsynced) == ([0, 2], [])
    assert persisted(state) == ([], 0, 0)  # the fdatasync has not returned yet
    download.end_sync(state)
    assert download.syncing is None
    assert download.durable.indices() == [0, 2]
    assert persisted(state) == ([0, 2], BOOK + 1000, 2)


def test_books_written_during_a_batch_wait_for_the_next(download: Download, state: State) -> None:
    land(download, 0)
    assert download.begin_sync()
    land(download, 1)
    assert not download.begin_sync()  # one batch at a time
    download.end_sync(state)
    assert persisted(state)[0] == [0]
    assert download.begin_sync() and download.syncing == [1]
    download.end_sync(state)
    assert persisted(state)[0] == [0, 1]


def test_no_batch_without_written_books(download: Download) -> None:
    assert not download.begin_sync()
    assert download.syncing is None


def test_sync_now_makes_everything_durable(download: Download, state: State) -> None:
    land(download, 0)
    download.begin_sync()
    land(download, 2)
    download.sync_now(state)
    assert (download.syncing, download.unsynced) == (None, [])
    assert persisted(state)[0] == [0, 2]


def test_durable_starts_from_what_the_picker_holds(download: Download) -> None:
    have = Bitfield(LIB.books)
    have.add(1)
    resumed = Download(library=LIB, record=download.record, picker=Picker(have), fd=download.fd,
                       part_path=download.part_path)
    assert resumed.durable.indices() == [1]
    resumed.durable.add(2)
    assert 2 not in resumed.picker.have  # a copy, not the picker's bitfield


def test_finishable_only_when_complete_and_durable(download: Download, state: State) -> None:
    for book in range(3):
        land(download, book)
    assert download.complete and not download.finishable
    download.begin_sync()
    assert not download.finishable
    download.end_sync(state)
    assert download.finishable


def test_write_to_a_file_that_cannot_be_written_is_a_disk_error(download: Download) -> None:
    readonly = os.open(download.part_path, os.O_RDONLY)
    download.close()
    download.fd = readonly
    with pytest.raises(DiskError, match="cannot write"):
        write_book(download.fd, 0, book_of(0))
    assert (download.downloaded, download.fetched, download.unsynced) == (0, 0, [])


# --- strikes ------------------------------------------------------------------------------------------------


def test_a_peer_is_banned_after_the_threshold_of_bad_books(download: Download) -> None:
    assert BAN_THRESHOLD == 3
    assert download.strike("A") is False
    assert download.strike("B") is False
    assert download.strike("A") is False
    assert download.banned == set()
    assert download.strike("A") is True
    assert download.banned == {"A"}
    assert download.bad_books == 4
    assert download.strikes == {"A": 3, "B": 1}


# --- finish ------------------------------------------------------------------------------------------------


def test_finish_renames_and_marks_seeding(download: Download, state: State, config: Config) -> None:
    for book in range(3):
        land(download, book)
    assert download.complete
    final = download.finish(state)
    assert final == config.downloads_dir / "movie.mkv"
    assert final.read_bytes() == DATA
    assert not download.part_path.exists()
    record = state.get(LIB.id_hex)
    assert record is not None
    assert record.status is Status.SEEDING and record.stuff_path == final
    assert record.have.complete and record.completed_at is not None


def test_finish_never_overwrites_an_existing_file(download: Download, state: State, config: Config) -> None:
    existing = config.downloads_dir / "movie.mkv"
    existing.write_bytes(b"somebody else's movie")
    for book in range(3):
        land(download, book)
    final = download.finish(state)
    assert final == config.downloads_dir / f"movie.mkv.{LIB.id_hex[:8]}"
    assert final.read_bytes() == DATA
    assert existing.read_bytes() == b"somebody else's movie"


def test_final_path_and_partial_path(tmp_path: Path) -> None:
    assert partial_path(tmp_path / "movie.mkv") == tmp_path / "movie.mkv.part"
    assert final_path(tmp_path / "movie.mkv.part", LIB) == tmp_path / "movie.mkv"
