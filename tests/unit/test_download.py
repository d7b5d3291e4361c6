"""One download's progress as pure state: sync batches, durability, strikes and bans."""

from __future__ import annotations

import random

from services.peer.bitfield import Bitfield
from services.peer.download import BAN_THRESHOLD, Download
from services.peer.library import MIN_BOOK_SIZE, HashAlgorithm, Library, hash_bytes, make_library
from services.peer.picker import Picker

BOOK = MIN_BOOK_SIZE
SIZE = 2 * BOOK + 1000
DATA = random.Random(7).randbytes(SIZE)


def make(data: bytes = DATA) -> Library:
    hashes = b"".join(hash_bytes(HashAlgorithm.BLAKE3, data[i : i + BOOK]) for i in range(0, len(data), BOOK))
    return make_library(name="movie.mkv", size=len(data), book_size=BOOK, hash_algorithm=HashAlgorithm.BLAKE3,
                        book_hashes=hashes, hubs=(), created_at=0, creator="test")


LIB = make()


def fresh(have: Bitfield | None = None) -> Download:
    return Download(library=LIB, picker=Picker(have or Bitfield(LIB.books)))


def written(download: Download, book: int, peer: str = "A") -> None:
    """What the requestor logic does once a good book is on disk."""
    download.record_written(book, LIB.book_span(book)[1])
    download.picker.received(book, peer)


def test_a_written_book_counts_but_is_not_durable_yet() -> None:
    download = fresh()
    written(download, 2)
    written(download, 0)
    assert (download.downloaded, download.fetched, download.unsynced) == (BOOK + 1000, 2, [2, 0])
    assert download.durable.indices() == []


def test_a_sync_batch_makes_its_books_durable_when_it_ends() -> None:
    download = fresh()
    written(download, 0)
    written(download, 2)
    assert download.begin_sync()
    assert (download.syncing, download.unsynced) == ([0, 2], [])
    assert download.durable.indices() == []  # the fdatasync has not returned yet
    download.end_sync()
    assert download.syncing is None
    assert download.durable.indices() == [0, 2]


def test_books_written_during_a_batch_wait_for_the_next() -> None:
    download = fresh()
    written(download, 0)
    assert download.begin_sync()
    written(download, 1)
    assert not download.begin_sync()  # one batch at a time
    download.end_sync()
    assert download.durable.indices() == [0]
    assert download.begin_sync() and download.syncing == [1]
    download.end_sync()
    assert download.durable.indices() == [0, 1]


def test_a_failed_batch_goes_back_before_the_books_written_since() -> None:
    download = fresh()
    written(download, 0)
    download.begin_sync()
    written(download, 1)
    download.abort_sync()
    assert (download.syncing, download.unsynced, download.durable.indices()) == (None, [0, 1], [])
    assert download.begin_sync() and download.syncing == [0, 1]


def test_no_batch_without_written_books() -> None:
    download = fresh()
    assert not download.begin_sync()
    assert download.syncing is None


def test_durable_starts_from_what_the_picker_holds() -> None:
    have = Bitfield(LIB.books)
    have.add(1)
    resumed = fresh(have)
    assert resumed.durable.indices() == [1]
    resumed.durable.add(2)
    assert 2 not in resumed.picker.have  # a copy, not the picker's bitfield


def test_finishable_only_when_complete_and_durable() -> None:
    download = fresh()
    for book in range(3):
        written(download, book)
    assert download.complete and not download.finishable
    download.begin_sync()
    assert not download.finishable
    download.end_sync()
    assert download.finishable


def test_a_peer_is_banned_after_the_threshold_of_bad_books() -> None:
    download = fresh()
    assert BAN_THRESHOLD == 3
    assert download.strike("A") is False
    assert download.strike("B") is False
    assert download.strike("A") is False
    assert download.banned == set()
    assert download.strike("A") is True
    assert download.banned == {"A"}
    assert download.bad_books == 4
    assert download.strikes == {"A": 3, "B": 1}
