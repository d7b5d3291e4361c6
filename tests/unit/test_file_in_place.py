"""A single-file download's place checked before anything is fetched (partfile.look, Storage.open): a complete
file there is adopted, a file that is not the library's is read but never written, the partial file's good books
are kept."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path

import pytest

from services.peer import catalog
from services.peer import requestor_logic as rl
from services.peer.bitfield import Bitfield
from services.peer.librarifier import librarify_tree
from services.peer.library import MIN_BOOK_SIZE, HashAlgorithm, Library, hash_bytes, make_library, write_library
from services.peer.partfile import HeldFile, PartFile, look, partial_path
from services.peer.state import LibraryRecord, State, Status
from services.peer.storage import Opened, Storage
from services.runtime.config import Config
from tests.polling import wait_for
from tests.unit.conftest import recorded_download

BOOK = MIN_BOOK_SIZE
DATA = random.Random(11).randbytes(3 * BOOK + 77)


def make() -> Library:
    hashes = b"".join(hash_bytes(HashAlgorithm.BLAKE3, DATA[i : i + BOOK]) for i in range(0, len(DATA), BOOK))
    return make_library(name="f.bin", size=len(DATA), book_size=BOOK, hash_algorithm=HashAlgorithm.BLAKE3,
                        book_hashes=hashes, hubs=(), created_at=0, creator="test")


LIB = make()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def with_book_changed(book: int) -> bytes:
    data = bytearray(DATA)
    data[book * BOOK + 1] ^= 0xFF
    return bytes(data)


@pytest.fixture
def record(config: Config, state: State) -> LibraryRecord:
    return recorded_download(config, state, LIB)


def opened(storage: Storage, record: LibraryRecord) -> Opened:
    """Open the download, polling while its place is checked off the loop."""
    result: Opened = wait_for(lambda: storage.open(record, 0.0), 30, "the download to open")
    return result


def test_a_complete_file_is_adopted_and_never_opened_for_writing(storage: Storage, record: LibraryRecord,
                                                                  state: State) -> None:
    record.stuff_path.write_bytes(DATA)
    before = os.stat(record.stuff_path).st_mtime_ns
    result = opened(storage, record)
    assert result.have.complete
    sink = storage.files[LIB.id]
    assert isinstance(sink, HeldFile) and sink.path == record.stuff_path
    assert not partial_path(record.stuff_path).exists()
    saved = state.get(LIB.id_hex)
    assert saved is not None and saved.have.complete  # held in state.db before it is seeded
    final = storage.finish(rl.Finish(LIB.id, 0, 0), 0.0)
    assert final == record.stuff_path
    saved = state.get(LIB.id_hex)
    assert saved is not None and saved.status is Status.SEEDING and saved.stuff_path == record.stuff_path
    assert record.stuff_path.read_bytes() == DATA and os.stat(record.stuff_path).st_mtime_ns == before


def test_a_file_with_one_book_differing_is_read_never_written(storage: Storage, record: LibraryRecord) -> None:
    record.stuff_path.write_bytes(with_book_changed(2))
    before = digest(record.stuff_path), os.stat(record.stuff_path).st_mtime_ns
    result = opened(storage, record)
    assert result.have.indices() == [0, 1, 3]
    assert isinstance(storage.files[LIB.id], PartFile)
    part = partial_path(record.stuff_path).read_bytes()
    for book in (0, 1, 3):  # copied into our own partial file
        assert part[book * BOOK : (book + 1) * BOOK] == DATA[book * BOOK : (book + 1) * BOOK]
    assert (digest(record.stuff_path), os.stat(record.stuff_path).st_mtime_ns) == before


def test_a_complete_copy_under_the_id_name_is_adopted_there(storage: Storage, record: LibraryRecord) -> None:
    record.stuff_path.write_bytes(with_book_changed(0))  # someone else's file at the name
    beside = record.stuff_path.with_name(f"f.bin.{LIB.id_hex[:8]}")
    beside.write_bytes(DATA)  # the library, downloaded beside it before state.db was lost
    opened(storage, record)
    sink = storage.files[LIB.id]
    assert isinstance(sink, HeldFile) and sink.path == beside


def test_the_partial_file_of_a_killed_download_is_kept(storage: Storage, record: LibraryRecord) -> None:
    partial = bytearray(len(DATA))
    partial[: 2 * BOOK] = DATA[: 2 * BOOK]
    partial_path(record.stuff_path).write_bytes(bytes(partial))
    assert opened(storage, record).have.indices() == [0, 1]


def test_a_link_at_the_name_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes(DATA)
    (tmp_path / "f.bin").symlink_to(elsewhere)
    found = look(LIB, tmp_path / "f.bin")
    assert found.adopted is None and found.good == [] and found.read == []
    assert not partial_path(tmp_path / "f.bin").exists()


def test_nothing_of_the_library_size_there_opens_at_once(storage: Storage, record: LibraryRecord) -> None:
    record.stuff_path.write_bytes(DATA[:BOOK])  # another size: not looked at
    result = storage.open(record, 0.0)
    assert result is not None and not result.have
    assert record.stuff_path.read_bytes() == DATA[:BOOK]


def test_a_library_removed_and_added_again_while_running_is_looked_at_again(
        storage: Storage, record: LibraryRecord, state: State, config: Config) -> None:
    beside = record.stuff_path.with_name(f"f.bin.{LIB.id_hex[:8]}")
    record.stuff_path.write_bytes(with_book_changed(1))
    assert opened(storage, record).have.indices() == [0, 2, 3]
    storage.stop(rl.Stop(LIB.id, opened_have(state), 0, 0, "removed"), 0.0)
    partial_path(record.stuff_path).rename(beside)  # as if completed beside the file that is not ours
    beside.write_bytes(DATA)
    state.remove(LIB.id_hex)  # `emma remove`, then `emma get LIB` while the same player runs
    catalog.record_download(state, config, LIB, record.lib_path)
    again = state.get(LIB.id_hex)
    assert again is not None and again.added_at != record.added_at
    opened(storage, again)
    sink = storage.files[LIB.id]
    assert isinstance(sink, HeldFile) and sink.path == beside


def opened_have(state: State) -> Bitfield:
    found = state.get(LIB.id_hex)
    assert found is not None
    return found.have


def test_a_folder_removed_and_added_again_while_running_is_checked_again(
        storage: Storage, state: State, config: Config, tmp_path: Path) -> None:
    source = tmp_path / "stuff"
    (source / "d").mkdir(parents=True)
    (source / "d" / "a.bin").write_bytes(DATA)
    (source / "b.bin").write_bytes(DATA[:BOOK + 5])
    library = librarify_tree(source, hubs=("tcp://127.0.0.1:1",), book_size=BOOK)
    lib_path = config.libs_dir / library.file_name
    write_library(library, lib_path)
    shutil.copytree(source, config.downloads_dir / "stuff")
    catalog.record_download(state, config, library, lib_path)
    first = state.get(library.id_hex)
    assert first is not None
    found: Opened = wait_for(lambda: storage.open(first, 0.0), 30, "the tree to open")
    assert found.have.complete
    storage.stop(rl.Stop(library.id, found.have, 0, 0, "removed"), 0.0)
    state.remove(library.id_hex)  # `emma remove`, then `emma get LIB` while the same player runs
    catalog.record_download(state, config, library, lib_path)
    again = state.get(library.id_hex)
    assert again is not None and not again.have
    found = wait_for(lambda: storage.open(again, 0.0), 30, "the tree to open again")
    assert found.have.complete  # its files were checked again, not taken for checked by the first record


def test_a_finish_never_replaces_a_file_at_either_final_name(storage: Storage, record: LibraryRecord,
                                                             state: State) -> None:
    beside = record.stuff_path.with_name(f"f.bin.{LIB.id_hex[:8]}")
    result = opened(storage, record)  # nothing there yet: a plain partial file
    assert not result.have
    for book in range(LIB.books):
        storage.land(rl.Land(LIB.id, book, "tcp://a:1", DATA[book * BOOK : (book + 1) * BOOK]))
    record.stuff_path.write_bytes(b"theirs")  # both names taken meanwhile, by files that are not the library
    beside.write_bytes(b"also theirs")
    assert storage.finish(rl.Finish(LIB.id, LIB.books, 0), 0.0) is None
    assert record.stuff_path.read_bytes() == b"theirs" and beside.read_bytes() == b"also theirs"
    assert partial_path(record.stuff_path).read_bytes() == DATA  # kept: moving a file away and resuming finishes
    failed = state.get(LIB.id_hex)
    assert failed is not None and failed.status is Status.ERROR and str(beside) in failed.reason
