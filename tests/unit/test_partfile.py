"""A download's partial file on real files in tmp_path: create, preallocate, write, sync, finish."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.peer.library import MIN_BOOK_SIZE, HashAlgorithm, Library, hash_bytes, make_library
from services.peer.partfile import DiskError, PartFile, final_path, partial_path, write_book

BOOK = MIN_BOOK_SIZE
SIZE = 2 * BOOK + 1000
DATA = random.Random(7).randbytes(SIZE)


def make(data: bytes = DATA, name: str = "movie.mkv") -> Library:
    hashes = b"".join(hash_bytes(HashAlgorithm.BLAKE3, data[i : i + BOOK]) for i in range(0, len(data), BOOK))
    return make_library(name=name, size=len(data), book_size=BOOK, hash_algorithm=HashAlgorithm.BLAKE3,
                        book_hashes=hashes, hubs=(), created_at=0, creator="test")


LIB = make()


def book_of(index: int) -> bytes:
    return DATA[index * BOOK : (index + 1) * BOOK]


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return tmp_path / "downloads" / LIB.name


@pytest.fixture
def part(target: Path) -> Iterator[PartFile]:
    opened = PartFile.open(LIB, target)
    yield opened
    opened.close()


def write_all(part: PartFile) -> None:
    for book in range(LIB.books):
        write_book(part.fd, LIB.book_span(book)[0], book_of(book))


def test_open_preallocates_name_part(part: PartFile, target: Path) -> None:
    assert part.path == target.with_name("movie.mkv.part")
    assert part.path.stat().st_size == SIZE
    assert not target.exists()


def test_open_again_keeps_what_was_written(part: PartFile, target: Path) -> None:
    write_book(part.fd, BOOK, book_of(1))
    again = PartFile.open(LIB, target)
    try:
        assert os.pread(again.fd, BOOK, BOOK) == book_of(1)
    finally:
        again.close()


def test_open_trims_a_partial_file_of_the_wrong_size(target: Path) -> None:
    target.parent.mkdir(parents=True)
    partial_path(target).write_bytes(b"x" * (SIZE + 500))
    part = PartFile.open(LIB, target)
    try:
        assert part.path.stat().st_size == SIZE
    finally:
        part.close()


def test_open_where_no_folder_can_be_made_is_a_disk_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(DiskError, match="cannot create"):
        PartFile.open(LIB, tmp_path / "file" / "movie.mkv")


def test_open_an_empty_library(tmp_path: Path) -> None:
    empty = make(b"", name="empty.bin")
    part = PartFile.open(empty, tmp_path / "empty.bin")
    try:
        assert part.path.stat().st_size == 0
    finally:
        part.close()


def test_write_puts_the_book_at_its_offset(part: PartFile) -> None:
    write_book(part.fd, 2 * BOOK, book_of(2))
    write_book(part.fd, 0, book_of(0))
    content = part.path.read_bytes()
    assert content[2 * BOOK :] == book_of(2)
    assert content[:BOOK] == book_of(0)
    assert content[BOOK : 2 * BOOK] == b"\x00" * BOOK


def test_write_to_a_file_that_cannot_be_written_is_a_disk_error(part: PartFile) -> None:
    readonly = os.open(part.path, os.O_RDONLY)
    try:
        with pytest.raises(DiskError, match="cannot write"):
            write_book(readonly, 0, book_of(0))
    finally:
        os.close(readonly)


def test_sync_of_a_closed_file_is_a_disk_error(part: PartFile) -> None:
    part.sync()
    os.close(part.fd)
    with pytest.raises(DiskError, match="cannot sync"):
        part.sync()


def test_finish_renames_to_the_final_name(part: PartFile, target: Path) -> None:
    write_all(part)
    assert part.finish() == target
    assert target.read_bytes() == DATA
    assert not part.path.exists()


def test_finish_never_overwrites_an_existing_file(part: PartFile, target: Path) -> None:
    target.write_bytes(b"somebody else's movie")
    write_all(part)
    final = part.finish()
    assert final == target.with_name(f"movie.mkv.{LIB.id_hex[:8]}")
    assert final.read_bytes() == DATA
    assert target.read_bytes() == b"somebody else's movie"


def test_finish_when_the_partial_file_is_gone_is_a_disk_error(part: PartFile) -> None:
    part.path.unlink()
    with pytest.raises(DiskError, match="cannot rename"):
        part.finish()


def test_final_path_and_partial_path(tmp_path: Path) -> None:
    assert partial_path(tmp_path / "movie.mkv") == tmp_path / "movie.mkv.part"
    assert final_path(tmp_path / "movie.mkv.part", LIB) == tmp_path / "movie.mkv"
