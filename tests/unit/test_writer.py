"""Verify-and-write (``writer.land``): its three outcomes, on a real file."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.peer.library import MIN_BOOK_SIZE, HashAlgorithm, Library, hash_bytes, make_library
from services.peer.partfile import PartFile
from services.peer.writer import Outcome, Written, land

BOOK = MIN_BOOK_SIZE
DATA = random.Random(3).randbytes(3 * BOOK - 10)


def make(algorithm: HashAlgorithm = HashAlgorithm.BLAKE3) -> Library:
    hashes = b"".join(hash_bytes(algorithm, DATA[i : i + BOOK]) for i in range(0, len(DATA), BOOK))
    return make_library(name="w.bin", size=len(DATA), book_size=BOOK, hash_algorithm=algorithm,
                        book_hashes=hashes, hubs=(), created_at=0, creator="test")


def book_of(index: int) -> bytes:
    return DATA[index * BOOK : (index + 1) * BOOK]


@pytest.fixture(params=list(HashAlgorithm))
def part(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PartFile]:
    opened = PartFile.open(make(request.param), tmp_path / "w.bin")
    yield opened
    opened.close()


def test_a_good_book_is_written_at_its_offset(part: PartFile) -> None:
    result = land(part.library, 2, "tcp://a:1", memoryview(book_of(2)), part)
    assert result == Written(part.library.id, 2, "tcp://a:1", len(book_of(2)), Outcome.WRITTEN)
    assert os.pread(part.fd, BOOK, 2 * BOOK) == book_of(2)


@pytest.mark.parametrize("payload", [book_of(1), b"\x00" + book_of(0)[1:], book_of(0)[:-1], b""])
def test_a_bad_book_is_never_written(part: PartFile, payload: bytes) -> None:
    result = land(part.library, 0, "tcp://liar:1", payload, part)
    assert (result.outcome, result.peer, result.book, result.length) == (Outcome.BAD_HASH, "tcp://liar:1", 0,
                                                                         len(payload))
    assert os.pread(part.fd, BOOK, 0) == b"\x00" * BOOK


def test_a_write_that_fails_is_a_disk_error_with_its_reason(part: PartFile) -> None:
    readonly = os.open(part.path, os.O_RDONLY)
    try:
        result = land(part.library, 1, "tcp://a:1", book_of(1), PartFile(part.library, readonly, part.path))
    finally:
        os.close(readonly)
    assert result.outcome is Outcome.DISK_ERROR
    assert "cannot write book at offset" in result.error
