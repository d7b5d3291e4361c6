"""A library's stuff already at its place in the downloads folder is recognised, never fetched again beside itself,
and a file there that is not the library's is left byte-for-byte untouched."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from services.peer.library import Library
from services.runtime import config as config_mod
from tests.swarm.conftest import log_events
from tools.swarm import Player, Swarm, file_digest, make_stuff, make_tree, tree_digest

pytestmark = pytest.mark.slow
BOOK = 16 * 1024


def shared(swarm: Swarm, source: Path) -> tuple[Player, Player, Library, Path]:
    """A seed sharing ``source`` and a leecher not started yet: both, the library, and the leecher's downloads
    folder (made, so a test can put a file where the download goes)."""
    seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
    library = swarm.share(seed, source, BOOK)
    downloads = config_mod.load(leecher.data_dir).downloads_dir
    downloads.mkdir(parents=True, exist_ok=True)
    return seed, leecher, library, downloads


def fetch(swarm: Swarm, seed: Player, leecher: Player, library: Library) -> None:
    """Start both players, give the leecher the library, and wait until it holds it."""
    for player in (seed, leecher):
        swarm.start_player(player)
    swarm.give(leecher, library)
    swarm.wait_complete(library, [leecher], timeout=60)


def test_a_complete_identical_file_is_adopted_with_no_book_fetched(swarm: Swarm, tmp_path: Path) -> None:
    source = tmp_path / "movie.bin"
    make_stuff(source, 20 * BOOK + 123, seed=7)
    seed, leecher, library, downloads = shared(swarm, source)
    shutil.copyfile(source, downloads / "movie.bin")  # left by an earlier state.db, or a removed library
    fetch(swarm, seed, leecher, library)  # a seed is there: a leecher that did not adopt the file would fetch it
    assert leecher.stuff_path(library.id_hex) == downloads / "movie.bin"
    assert leecher.fetched(library.id_hex) == 0
    assert sorted(p.name for p in downloads.iterdir()) == ["movie.bin"]  # no name.<id8>, no .part
    assert file_digest(downloads / "movie.bin") == file_digest(source)
    checked = log_events(leecher, "events", "local_file_checked")
    assert checked and checked[0]["books_kept"] == library.books and checked[0]["adopted"] == str(
        downloads / "movie.bin")


def test_a_different_file_of_the_same_size_is_left_untouched(swarm: Swarm, tmp_path: Path) -> None:
    source = tmp_path / "movie.bin"
    make_stuff(source, 20 * BOOK + 123, seed=7)
    seed, leecher, library, downloads = shared(swarm, source)
    theirs = downloads / "movie.bin"
    shutil.copyfile(source, theirs)
    with open(theirs, "r+b") as handle:  # someone's own edit of one book: the file is theirs, not the library's
        handle.seek(3 * BOOK + 9)
        handle.write(b"\x00" if source.read_bytes()[3 * BOOK + 9] else b"\x01")
    before, stamp = file_digest(theirs), os.stat(theirs).st_mtime_ns
    fetch(swarm, seed, leecher, library)
    placed = leecher.stuff_path(library.id_hex)
    assert placed == downloads / f"movie.bin.{library.id_hex[:8]}"
    assert file_digest(placed) == file_digest(source)
    assert file_digest(theirs) == before and os.stat(theirs).st_mtime_ns == stamp
    assert leecher.fetched(library.id_hex) == 1  # its good books were copied into our own file, not fetched
    checked = log_events(leecher, "events", "local_file_checked")
    assert checked and checked[0]["books_kept"] == library.books - 1 and checked[0]["adopted"] is None


def test_a_file_of_another_size_is_neither_read_nor_touched(swarm: Swarm, tmp_path: Path) -> None:
    source = tmp_path / "movie.bin"
    make_stuff(source, 6 * BOOK + 5, seed=8)
    seed, leecher, library, downloads = shared(swarm, source)
    theirs = downloads / "movie.bin"
    theirs.write_bytes(source.read_bytes()[: 3 * BOOK])  # a shorter file by that name: not the library
    fetch(swarm, seed, leecher, library)
    assert leecher.stuff_path(library.id_hex) == downloads / f"movie.bin.{library.id_hex[:8]}"
    assert theirs.read_bytes() == source.read_bytes()[: 3 * BOOK]
    assert leecher.fetched(library.id_hex) == library.books
    assert not log_events(leecher, "events", "local_file_checked")


def test_a_complete_identical_folder_is_still_kept_in_place(swarm: Swarm, tmp_path: Path) -> None:
    source = tmp_path / "stuff"
    make_tree(source, files=5, size=10 * BOOK, seed=9)
    seed, leecher, library, downloads = shared(swarm, source)
    shutil.copytree(source, downloads / "stuff")
    fetch(swarm, seed, leecher, library)
    assert leecher.stuff_path(library.id_hex) == downloads / "stuff"
    assert leecher.fetched(library.id_hex) == 0
    assert sorted(p.name for p in downloads.iterdir()) == ["stuff"]
    assert tree_digest(downloads / "stuff") == tree_digest(source)
