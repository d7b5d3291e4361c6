"""The library model: round trips, a stable id, and every way a .lib file can be wrong."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.peer.library import (
    AUTO_MAX_BOOK,
    AUTO_MIN_BOOK,
    FORMAT_FILE,
    HASH_LEN,
    MAGIC,
    MAX_BOOK_SIZE,
    MAX_HUBS,
    MAX_LIBRARY_BYTES,
    MIN_BOOK_SIZE,
    HashAlgorithm,
    Library,
    LibraryError,
    auto_book_size,
    book_count,
    book_span,
    check_name,
    make_library,
    parse_library,
    read_library,
    write_library,
)
from services.wire.pb import library_pb2

KIB = 1024
MIB = 1024 * KIB
BOOK = MIN_BOOK_SIZE


def fake_hashes(books: int) -> bytes:
    return b"".join(bytes([i % 256]) * HASH_LEN for i in range(books))


def sample(**overrides: Any) -> Library:
    """A valid library of 3 books (the last one short), with any field overridden."""
    parts: dict[str, Any] = {
        "name": "movie.mkv",
        "size": 2 * BOOK + 5,
        "book_size": BOOK,
        "hash_algorithm": HashAlgorithm.BLAKE3,
        "book_hashes": fake_hashes(3),
        "hubs": ("tcp://10.0.0.5:7070", "tcp://[::1]:7071"),
        "created_at": 1_700_000_000,
        "creator": "emma test",
    }
    parts.update(overrides)
    return make_library(**parts)


def raw_library(
    *,
    version: int = FORMAT_FILE,
    name: str = "movie.mkv",
    size: int = 2 * BOOK + 5,
    book_size: int = BOOK,
    algorithm: int = library_pb2.BLAKE3,
    hashes: bytes | None = None,
    hubs: tuple[str, ...] = ("tcp://10.0.0.5:7070",),
) -> bytes:
    """Bytes of a .lib file built by hand, bypassing make_library's checks."""
    info = library_pb2.LibraryInfo(
        name=name, size=size, book_size=book_size, hash_algorithm=algorithm,  # type: ignore[arg-type]
        book_hashes=fake_hashes(book_count(size, book_size)) if hashes is None else hashes,
    )
    wrapper = library_pb2.LibraryFile(
        format_version=version, info=info.SerializeToString(), hubs=list(hubs), created_at=1, creator="t"
    )
    return MAGIC + wrapper.SerializeToString()


# --- round trip and id -------------------------------------------------------------------------


def test_write_then_read_gives_equal_fields(tmp_path: Path) -> None:
    library = sample()
    path = tmp_path / "sub" / library.file_name
    write_library(library, path)
    back = read_library(path)
    assert back == library
    assert (back.name, back.size, back.book_size, back.hash_algorithm) == (
        "movie.mkv", 2 * BOOK + 5, BOOK, HashAlgorithm.BLAKE3
    )
    assert back.book_hashes == fake_hashes(3)
    assert back.hubs == ("tcp://10.0.0.5:7070", "tcp://[::1]:7071")
    assert (back.created_at, back.creator) == (1_700_000_000, "emma test")
    assert [back.book_hash(i) for i in range(3)] == [bytes([i]) * HASH_LEN for i in range(3)]
    assert [p.name for p in path.parent.iterdir()] == [library.file_name]  # no temp file left


def test_sha256_library_round_trips(tmp_path: Path) -> None:
    library = sample(hash_algorithm=HashAlgorithm.SHA256)
    write_library(library, tmp_path / "x.lib")
    assert read_library(tmp_path / "x.lib").hash_algorithm is HashAlgorithm.SHA256


def test_id_is_stable_across_write_and_read(tmp_path: Path) -> None:
    library = sample()
    write_library(library, tmp_path / "a.lib")
    once = read_library(tmp_path / "a.lib")
    write_library(once, tmp_path / "b.lib")
    twice = read_library(tmp_path / "b.lib")
    assert library.id == once.id == twice.id
    assert len(library.id) == 32 and library.id_hex == library.id.hex()
    assert library.file_name == f"lib_{library.id_hex}.lib"
    assert (tmp_path / "a.lib").read_bytes() == (tmp_path / "b.lib").read_bytes()


def test_id_covers_info_but_not_hubs_or_creation() -> None:
    library = sample()
    assert sample(hubs=("tcp://other:1",), created_at=5, creator="x").id == library.id
    assert library.with_hubs(("tcp://other:1",)).id == library.id
    assert sample(name="movie2.mkv").id != library.id
    assert sample(hash_algorithm=HashAlgorithm.SHA256).id != library.id


def test_id_differs_when_one_hash_byte_differs() -> None:
    hashes = bytearray(fake_hashes(3))
    hashes[HASH_LEN + 7] ^= 1
    assert sample(book_hashes=bytes(hashes)).id != sample().id


def test_with_hubs_validates() -> None:
    with pytest.raises(LibraryError, match="bad hub endpoint"):
        sample().with_hubs(("nonsense",))


# --- validation --------------------------------------------------------------------------------


def test_valid_raw_library_parses() -> None:
    """The hand-built bytes used below are valid unless a test spoils them."""
    assert parse_library(raw_library()).books == 3


@pytest.mark.parametrize("data", [b"", b"EMMALIB", b"PK\x03\x04 zip file", b"emmalib\n" + raw_library()[8:]])
def test_no_magic_is_not_a_library(data: bytes) -> None:
    with pytest.raises(LibraryError, match="not an Emma library"):
        parse_library(data)


@pytest.mark.parametrize("version", [0, 3, 99])
def test_wrong_format_version(version: int) -> None:
    with pytest.raises(LibraryError, match=f"unsupported library format version {version}"):
        parse_library(raw_library(version=version))


def test_every_truncation_up_to_the_end_of_info_is_refused() -> None:
    data = sample().to_bytes()
    wrapper = library_pb2.LibraryFile(format_version=FORMAT_FILE, info=sample().info_bytes)
    info_end = len(MAGIC) + len(wrapper.SerializeToString())
    assert data[:info_end] == MAGIC + wrapper.SerializeToString()
    for cut in range(info_end):
        with pytest.raises(LibraryError):
            parse_library(data[:cut])


def test_truncated_file_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "t.lib"
    data = sample().to_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LibraryError, match="truncated or corrupt") as caught:
        read_library(path)
    assert str(path) in str(caught.value)


def test_corrupt_info_bytes() -> None:
    wrapper = library_pb2.LibraryFile(format_version=FORMAT_FILE, info=b"\x0a\xff\xff")
    with pytest.raises(LibraryError, match="info is truncated or corrupt"):
        parse_library(MAGIC + wrapper.SerializeToString())


@pytest.mark.parametrize(
    "hashes",
    [b"", fake_hashes(2), fake_hashes(4), fake_hashes(3)[:-1], fake_hashes(3) + b"x"],
    ids=["none", "one-short", "one-extra", "partial-last", "byte-extra"],
)
def test_hash_count_must_match_size_and_book_size(hashes: bytes) -> None:
    with pytest.raises(LibraryError, match="needs 3"):
        parse_library(raw_library(hashes=hashes))
    with pytest.raises(LibraryError, match="needs 3"):
        sample(book_hashes=hashes)


def test_empty_stuff_has_no_books() -> None:
    library = sample(size=0, book_hashes=b"")
    assert library.books == 0
    with pytest.raises(LibraryError, match="needs 0"):
        parse_library(raw_library(size=0, hashes=fake_hashes(1)))


@pytest.mark.parametrize(
    "book_size", [0, 1, 1000, 3 * BOOK, MIN_BOOK_SIZE // 2, MAX_BOOK_SIZE * 2, MAX_BOOK_SIZE + BOOK, 2**32 - 1]
)
def test_bad_book_size(book_size: int) -> None:
    with pytest.raises(LibraryError, match=f"bad book size {book_size}"):
        parse_library(raw_library(book_size=book_size, hashes=b""))


@pytest.mark.parametrize("book_size", [MIN_BOOK_SIZE, 1 * MIB, MAX_BOOK_SIZE])
def test_book_size_bounds_are_accepted(book_size: int) -> None:
    assert parse_library(raw_library(book_size=book_size)).book_size == book_size


@pytest.mark.parametrize("algorithm", [0, 3, 77])
def test_unknown_hash_algorithm(algorithm: int) -> None:
    with pytest.raises(LibraryError, match=f"unknown hash algorithm number {algorithm}"):
        parse_library(raw_library(algorithm=algorithm))


BAD_NAMES = [
    "", ".", "..", "/etc/passwd", "/movie.mkv", "dir/movie.mkv", "dir\\movie.mkv", "C:\\movie.mkv",
    "../movie.mkv", "a/../b", "~", "~root", "nul\x00byte", "x" * 256, "é" * 128,
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(LibraryError, match="bad stuff name"):
        check_name(name)
    with pytest.raises(LibraryError, match="bad stuff name"):
        parse_library(raw_library(name=name))


@pytest.mark.parametrize("name", ["movie.mkv", ".hidden", "a.b.c", "no-extension", "x" * 246, "é" * 123, "a~b",
                                  "a..b", "release..v2.txt", "movie.mkv.."])
def test_plain_names_are_accepted(name: str) -> None:
    assert check_name(name) == name
    assert parse_library(raw_library(name=name)).name == name


BAD_HUBS = [
    "10.0.0.5:7070", "http://10.0.0.5:7070", "tcp://10.0.0.5", "tcp://:7070", "tcp://10.0.0.5:0",
    "tcp://10.0.0.5:65536", "tcp://10.0.0.5:port", "tcp://bad_host!:7070", "tcp://[::1:7070",
    "tcp://[nope]:7070", "tcp://" + "a" * 300 + ":1",
]


@pytest.mark.parametrize("hub", BAD_HUBS)
def test_bad_hub_endpoint_is_refused(hub: str) -> None:
    with pytest.raises(LibraryError, match="bad hub endpoint"):
        parse_library(raw_library(hubs=("tcp://10.0.0.5:7070", hub)))


def test_too_many_hubs() -> None:
    hubs = tuple(f"tcp://10.0.0.{i}:7070" for i in range(MAX_HUBS + 1))
    assert len(parse_library(raw_library(hubs=hubs[:MAX_HUBS])).hubs) == MAX_HUBS
    with pytest.raises(LibraryError, match="at most 16"):
        parse_library(raw_library(hubs=hubs))


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="no such library file"):
        read_library(tmp_path / "nope.lib")


def test_read_directory(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="is a directory"):
        read_library(tmp_path)


def test_read_huge_file_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.lib"
    with open(path, "wb") as handle:
        handle.truncate(MAX_LIBRARY_BYTES + 1)  # sparse
    with pytest.raises(LibraryError, match="larger than any library"):
        read_library(path)


def test_write_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.lib"
    path.write_bytes(b"old")
    write_library(sample(), path)
    assert read_library(path) == sample()


# --- books and book sizes -----------------------------------------------------------------------


@given(size=st.integers(0, 10**7), shift=st.integers(0, 12))
def test_books_cover_every_byte_exactly_once(size: int, shift: int) -> None:
    book_size = 1 << shift
    count = book_count(size, book_size)
    spans = [book_span(i, size, book_size) for i in range(count)] if count < 200_000 else []
    if spans:
        assert spans[0][0] == 0
        assert all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(spans))
        assert sum(length for _, length in spans) == size
        assert all(length == book_size for _, length in spans[:-1])
        assert 0 < spans[-1][1] <= book_size
    assert count * book_size >= size > (count - 1) * book_size or size == count == 0
    assert book_span(count, size, book_size)[1] == 0


@pytest.mark.parametrize(
    ("size", "book_size", "count", "last"),
    [(0, BOOK, 0, None), (1, BOOK, 1, 1), (BOOK, BOOK, 1, BOOK), (BOOK + 1, BOOK, 2, 1), (3 * BOOK, BOOK, 3, BOOK)],
)
def test_book_count_and_last_span(size: int, book_size: int, count: int, last: int | None) -> None:
    assert book_count(size, book_size) == count
    if last is not None:
        assert book_span(count - 1, size, book_size) == ((count - 1) * book_size, last)


@given(size=st.integers(0, 2**48))
def test_auto_book_size_is_a_bounded_power_of_two(size: int) -> None:
    book = auto_book_size(size)
    assert book & (book - 1) == 0
    assert AUTO_MIN_BOOK <= book <= AUTO_MAX_BOOK


@given(size=st.integers(AUTO_MIN_BOOK * 1000, AUTO_MAX_BOOK * 4000))
def test_auto_book_size_gives_1000_to_4000_books_in_the_middle_range(size: int) -> None:
    assert 1000 <= book_count(size, auto_book_size(size)) <= 4000


@given(a=st.integers(0, 2**46), b=st.integers(0, 2**46))
def test_auto_book_size_grows_with_size(a: int, b: int) -> None:
    small, large = sorted((a, b))
    assert auto_book_size(small) <= auto_book_size(large)


@pytest.mark.parametrize(
    ("size", "book"),
    [(0, 64 * KIB), (1, 64 * KIB), (32 * MIB, 64 * KIB), (256 * MIB, 128 * KIB), (1000 * MIB, 256 * KIB),
     (1024 * MIB, 512 * KIB),
     (100 * 1024 * MIB, 32 * MIB // 2), (10**15, 16 * MIB)],
)
def test_auto_book_size_examples(size: int, book: int) -> None:
    assert auto_book_size(size) == book
