"""librarify and verify on real files: every byte in exactly one book, damage found in the right book."""

from __future__ import annotations

import hashlib
import os
import random
from importlib import metadata
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.peer.hashing import iter_book_hashes
from services.peer.librarifier import librarify, verify
from services.peer.library import HashAlgorithm, LibraryError, book_count, book_span, read_library, write_library

BOOK = 16 * 1024
HUBS = ("tcp://127.0.0.1:7070",)

# Sizes around book boundaries, and a few in between.
EDGE_SIZES = [0, 1, BOOK - 1, BOOK, BOOK + 1, 2 * BOOK, 2 * BOOK + 1, 3 * BOOK - 1, 5 * BOOK]


def make_file(path: Path, size: int, seed: int = 0) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ 0x01]))


@settings(max_examples=40, deadline=None)
@given(size=st.sampled_from(EDGE_SIZES) | st.integers(0, 6 * BOOK + 1), seed=st.integers(0, 2**32))
def test_books_cover_every_byte_once_and_verify_agrees(
    tmp_path_factory: pytest.TempPathFactory, size: int, seed: int
) -> None:
    path = tmp_path_factory.mktemp("stuff") / "stuff.bin"
    data = make_file(path, size, seed)
    library = librarify(path, hubs=HUBS, book_size=BOOK)

    assert (library.size, library.book_size, library.books) == (size, BOOK, book_count(size, BOOK))
    rebuilt = b"".join(data[o : o + n] for o, n in (book_span(i, size, BOOK) for i in range(library.books)))
    assert rebuilt == data
    for index in range(library.books):
        offset, length = library.book_span(index)
        assert library.book_hash(index) == blake3.blake3(data[offset : offset + length]).digest()

    result = verify(library, path)
    assert result.ok and result.size_matches
    assert (result.good, result.bad) == (list(range(library.books)), [])


@pytest.mark.parametrize(
    ("offset", "book"),
    [(0, 0), (BOOK - 1, 0), (BOOK, 1), (2 * BOOK + 77, 2), (4 * BOOK, 4), (4 * BOOK + 99, 4)],
)
def test_verify_finds_a_flipped_byte_in_the_right_book(tmp_path: Path, offset: int, book: int) -> None:
    path = tmp_path / "stuff.bin"
    make_file(path, 4 * BOOK + 100)
    library = librarify(path, hubs=HUBS, book_size=BOOK)
    flip(path, offset)
    result = verify(library, path)
    assert result.bad == [book]
    assert result.good == [i for i in range(5) if i != book]
    assert result.size_matches and not result.ok


@pytest.mark.parametrize(("keep", "bad"), [(3 * BOOK + 10, [3, 4]), (2 * BOOK, [2, 3, 4]), (0, [0, 1, 2, 3, 4])])
def test_verify_short_file_marks_missing_books_bad(tmp_path: Path, keep: int, bad: list[int]) -> None:
    path = tmp_path / "stuff.bin"
    make_file(path, 4 * BOOK + 100)
    library = librarify(path, hubs=HUBS, book_size=BOOK)
    os.truncate(path, keep)
    result = verify(library, path)
    assert result.bad == bad
    assert result.good == [i for i in range(5) if i not in bad]
    assert not result.size_matches and not result.ok


def test_verify_long_file_fails_on_size_only(tmp_path: Path) -> None:
    path = tmp_path / "stuff.bin"
    make_file(path, 2 * BOOK + 3)
    library = librarify(path, hubs=HUBS, book_size=BOOK)
    with open(path, "ab") as handle:
        handle.write(b"more")
    result = verify(library, path)
    assert (result.good, result.bad, result.size_matches, result.ok) == ([0, 1, 2], [], False, False)


def test_sha256_hashes_match_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "stuff.bin"
    data = make_file(path, 2 * BOOK + 9)
    library = librarify(path, hubs=HUBS, book_size=BOOK, algorithm=HashAlgorithm.SHA256)
    assert library.hash_algorithm is HashAlgorithm.SHA256
    assert [library.book_hash(i) for i in range(3)] == [
        hashlib.sha256(data[i * BOOK : (i + 1) * BOOK]).digest() for i in range(3)
    ]
    assert verify(library, path).ok
    flip(path, BOOK + 1)
    assert verify(library, path).bad == [1]


def test_id_differs_when_one_byte_of_the_stuff_differs(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "stuff.bin", tmp_path / "b" / "stuff.bin"
    a.parent.mkdir()
    b.parent.mkdir()
    make_file(a, 3 * BOOK)
    make_file(b, 3 * BOOK)
    assert librarify(a, hubs=HUBS, book_size=BOOK).id == librarify(b, hubs=HUBS, book_size=BOOK).id
    flip(b, 2 * BOOK + 5)
    assert librarify(a, hubs=HUBS, book_size=BOOK).id != librarify(b, hubs=HUBS, book_size=BOOK).id


def test_id_does_not_depend_on_time_or_hubs(tmp_path: Path) -> None:
    path = tmp_path / "stuff.bin"
    make_file(path, BOOK + 1)
    first = librarify(path, hubs=HUBS, book_size=BOOK, now=1)
    second = librarify(path, hubs=("tcp://10.1.1.1:9",), book_size=BOOK, now=2)
    assert (first.created_at, second.created_at) == (1, 2)
    assert first.id == second.id


def test_librarified_library_survives_write_and_read(tmp_path: Path) -> None:
    path = tmp_path / "stuff.bin"
    make_file(path, 3 * BOOK + 1)
    library = librarify(path, hubs=HUBS, book_size=BOOK)
    write_library(library, tmp_path / library.file_name)
    back = read_library(tmp_path / library.file_name)
    assert back == library and back.name == "stuff.bin"
    assert back.creator == f"emma {metadata.version('emma-torrent')}"
    assert verify(back, path).ok


def test_automatic_book_size_for_a_small_file(tmp_path: Path) -> None:
    path = tmp_path / "stuff.bin"
    make_file(path, 1000)
    library = librarify(path, hubs=HUBS)
    assert (library.book_size, library.books) == (64 * 1024, 1)


def test_progress_reports_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "stuff.bin"
    make_file(path, 3 * BOOK + 17)
    seen: list[int] = []
    librarify(path, hubs=HUBS, book_size=BOOK, progress=seen.append)
    assert seen == [BOOK, BOOK, BOOK, 17]


def test_hashing_a_file_shorter_than_claimed_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "stuff.bin"
    make_file(path, BOOK + 1)
    with pytest.raises(ValueError, match="shorter than"):
        list(iter_book_hashes(path, 3 * BOOK, BOOK, HashAlgorithm.BLAKE3))


# --- what cannot be shared ---------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="no such file"):
        librarify(tmp_path / "nope.bin", hubs=HUBS)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="is a directory"):
        librarify(tmp_path, hubs=HUBS)


def test_fifo_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(LibraryError, match="not a regular file"):
        librarify(fifo, hubs=HUBS)


def test_special_device_is_not_a_regular_file() -> None:
    with pytest.raises(LibraryError, match="not a regular file"):
        librarify(Path("/dev/null"), hubs=HUBS)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.bin"
    make_file(path, 10)
    path.chmod(0)
    try:
        with pytest.raises(LibraryError, match="permission denied"):
            librarify(path, hubs=HUBS)
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize("book_size", [0, 1000, 3 * BOOK, BOOK // 2, 128 * 1024 * 1024])
def test_bad_book_size(tmp_path: Path, book_size: int) -> None:
    path = tmp_path / "stuff.bin"
    make_file(path, 10)
    with pytest.raises(LibraryError, match="bad book size"):
        librarify(path, hubs=HUBS, book_size=book_size)


def test_bad_hub(tmp_path: Path) -> None:
    path = tmp_path / "stuff.bin"
    make_file(path, 10)
    with pytest.raises(LibraryError, match="bad hub endpoint"):
        librarify(path, hubs=("tcp://127.0.0.1:0",))


def test_file_name_that_is_not_a_plain_name(tmp_path: Path) -> None:
    path = tmp_path / "a\x1b[2Jb"
    make_file(path, 10)
    with pytest.raises(LibraryError, match="bad stuff name"):
        librarify(path, hubs=HUBS)


def test_verify_missing_or_special_file(tmp_path: Path) -> None:
    path = tmp_path / "stuff.bin"
    make_file(path, 10)
    library = librarify(path, hubs=HUBS, book_size=BOOK)
    with pytest.raises(LibraryError, match="no such file"):
        verify(library, tmp_path / "gone.bin")
    with pytest.raises(LibraryError, match="is a directory"):
        verify(library, tmp_path)


def test_permission_error_while_reading_is_a_library_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unreadable case as root too: make the open fail as it would for another user."""
    path = tmp_path / "secret.bin"
    make_file(path, 10)

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("services.peer.hashing.os.open", refuse)
    with pytest.raises(LibraryError, match="permission denied"):
        librarify(path, hubs=HUBS)


def test_verify_file_shrinking_while_read_is_a_library_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file cut short between its stat and its read (say, still being written) is an error, not a crash."""
    path = tmp_path / "stuff.bin"
    make_file(path, 3 * BOOK)
    library = librarify(path, hubs=HUBS, book_size=BOOK)
    os.truncate(path, BOOK)
    monkeypatch.setattr("services.peer.librarifier.stuff_size", lambda _path: 3 * BOOK)
    with pytest.raises(LibraryError, match="shorter than"):
        verify(library, path)
