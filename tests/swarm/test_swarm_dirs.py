"""Real swarms of tree libraries: whole trees travel, selections fetch only theirs, nothing is fetched twice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.peer.library import Library
from services.peer.state import State, Status
from services.runtime import config as config_mod
from tests.polling import wait_for
from tests.swarm.conftest import log_events, persisted_books
from tools.swarm import Player, Swarm, make_stuff, make_tree, tree_digest

pytestmark = pytest.mark.slow
BOOK = 16 * 1024


def unicode_tree(root: Path) -> Path:
    """Nested folders, unicode names, empty files, an empty folder and files of uneven sizes."""
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "empty" / "inside").mkdir(parents=True)
    (root / "ünïcödé 日本").mkdir()
    make_stuff(root / "a" / "b" / "c" / "deep.bin", 5 * BOOK + 17, seed=1)
    make_stuff(root / "a" / "one-book.bin", BOOK, seed=2)
    make_stuff(root / "ünïcödé 日本" / "😀 smile.txt", 1234, seed=3)
    make_stuff(root / "release..v2.txt", 3 * BOOK, seed=4)
    (root / "a" / "zero").write_bytes(b"")
    (root / "zero too").write_bytes(b"")
    return root


def held(player: Player, library: Library) -> Path:
    path = player.stuff_path(library.id_hex)
    assert path is not None
    return path


def books_of(library: Library, *paths: str) -> int:
    tree = library.tree
    assert tree is not None
    return sum(len(tree.books_of(tree.paths.index(p))) for p in paths)


def test_a_tree_ends_identical_folders_and_all(swarm: Swarm, tmp_path: Path) -> None:
    source = unicode_tree(tmp_path / "stuff")
    seed, *leechers = [swarm.add_player(f"p{i}") for i in range(3)]
    library = swarm.share(seed, source, BOOK)
    assert library.tree is not None and library.tree.empty_dirs == ("empty/inside",)
    for player in [seed, *leechers]:
        swarm.start_player(player)
    for player in leechers:
        swarm.give(player, library)
    swarm.wait_complete(library, leechers, timeout=60)
    want = tree_digest(source)
    assert "empty/inside" in want and "zero too" in want
    for player in leechers:
        assert held(player, library).name == "stuff"
        assert tree_digest(held(player, library)) == want, f"{player.name} has a different tree"
        assert player.fetched(library.id_hex) == library.books


def test_a_zero_length_tree(swarm: Swarm, tmp_path: Path) -> None:
    source = tmp_path / "nothing"
    (source / "dir" / "empty").mkdir(parents=True)
    (source / "dir" / "zero").write_bytes(b"")
    seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
    library = swarm.share(seed, source, BOOK)
    assert library.books == 0 and library.size == 0
    for player in (seed, leecher):
        swarm.start_player(player)
    swarm.give(leecher, library)
    swarm.wait_complete(library, [leecher], timeout=60)
    assert tree_digest(held(leecher, library)) == tree_digest(source)


def test_a_tree_of_many_files_resumes_after_a_kill_without_refetching(swarm: Swarm, tmp_path: Path) -> None:
    source = tmp_path / "many"
    make_tree(source, files=120, size=120 * BOOK, seed=5)
    seed = swarm.add_player("seed", upload_limit=256 * 1024)
    leecher = swarm.add_player("leecher")
    library = swarm.share(seed, source, BOOK)
    for player in (seed, leecher):
        swarm.start_player(player)
    swarm.give(leecher, library)
    wait_for(lambda: len(persisted_books(leecher, library.id_hex)) >= library.books // 4, 60,
               "a quarter of the books")
    swarm.kill_service(leecher, "requestor")
    kept = persisted_books(leecher, library.id_hex)
    assert 0 < len(kept) < library.books
    swarm.start_player(leecher, services=("requestor",))
    swarm.wait_complete(library, [leecher], timeout=120)
    assert tree_digest(held(leecher, library)) == tree_digest(source)
    second = next(p for p in leecher.procs if p.name.endswith("requestor"))
    batches = [e["books"] for e in log_events(leecher, "debug", "books_written") if e.get("pid") == second.pid]
    refetched = {int(book) for batch in batches if isinstance(batch, list) for book in batch}
    assert refetched, "the restarted requestor fetched nothing"
    assert not kept & refetched, f"books verified before the kill were fetched again: {kept & refetched}"


def test_only_fetches_exactly_the_selected_books_and_more_later_resumes(swarm: Swarm, tmp_path: Path) -> None:
    source = unicode_tree(tmp_path / "stuff")
    seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
    library = swarm.share(seed, source, BOOK)
    for player in (seed, leecher):
        swarm.start_player(player)
    swarm.give(leecher, library, only=("a/b", "*.txt"))
    swarm.wait_complete(library, [leecher], timeout=60)
    selected = ("a/b/c/deep.bin", "release..v2.txt", "ünïcödé 日本/😀 smile.txt")
    assert leecher.fetched(library.id_hex) == books_of(library, *selected)
    root = held(leecher, library)
    got = tree_digest(root)
    want = tree_digest(source)
    assert {path: got[path] for path in selected} == {path: want[path] for path in selected}
    assert not (root / "a" / "one-book.bin").exists() and not (root / "zero too").exists()
    assert (root / "empty" / "inside").is_dir()

    config = config_mod.load(leecher.data_dir)
    state = State(config.state_db)
    try:
        state.select(library.id_hex, (), Status.DOWNLOADING)  # what `emma get LIB` (again, every file) does
    finally:
        state.close()
    leecher.done_at = None
    swarm.wait_complete(library, [leecher], timeout=60)
    assert tree_digest(root) == want
    assert leecher.fetched(library.id_hex) == library.books  # the first selection's books were not fetched again


def test_a_player_holding_half_the_files_fetches_only_the_other_half(swarm: Swarm, tmp_path: Path) -> None:
    source = unicode_tree(tmp_path / "stuff")
    seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
    library = swarm.share(seed, source, BOOK)
    placed = tmp_path / "leecher-downloads"
    config = config_mod.load(leecher.data_dir)
    target = config.downloads_dir / "stuff"
    kept = ("a/b/c/deep.bin", "release..v2.txt")
    for rel in kept:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target / rel)
    damaged = target / "a" / "b" / "c" / "deep.bin"
    with open(damaged, "r+b") as handle:  # one bad book in a file otherwise in place: only it is fetched
        handle.seek(2 * BOOK + 5)
        handle.write(b"\xff")
    assert not placed.exists()
    for player in (seed, leecher):
        swarm.start_player(player)
    swarm.give(leecher, library)
    swarm.wait_complete(library, [leecher], timeout=60)
    assert tree_digest(held(leecher, library)) == tree_digest(source)
    assert leecher.fetched(library.id_hex) == library.books - books_of(library, *kept) + 1
    checked = log_events(leecher, "events", "local_data_checked")
    assert checked and checked[0]["books_kept"] == books_of(library, *kept) - 1


def test_a_file_in_two_libraries_is_fetched_once(swarm: Swarm, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, number in ((first, 10), (second, 20)):
        folder.mkdir()
        make_stuff(folder / f"own-{number}.bin", 3 * BOOK + 1, seed=number)
    make_stuff(first / "shared.bin", 6 * BOOK + 99, seed=7)
    (second / "elsewhere").mkdir()
    shutil.copyfile(first / "shared.bin", second / "elsewhere" / "same bytes.bin")
    seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
    one = swarm.share(seed, first, BOOK)
    two = swarm.share(seed, second, BOOK)
    for player in (seed, leecher):
        swarm.start_player(player)
    swarm.give(leecher, one)
    swarm.wait_complete(one, [leecher], timeout=60)
    assert leecher.fetched(one.id_hex) == one.books
    swarm.give(leecher, two)
    leecher.done_at = None
    swarm.wait_complete(two, [leecher], timeout=60)
    assert tree_digest(held(leecher, two)) == tree_digest(second)
    assert leecher.fetched(two.id_hex) == two.books - books_of(two, "elsewhere/same bytes.bin")
    checked = [e for e in log_events(leecher, "events", "local_data_checked") if e["library"] == two.id_hex]
    assert checked and checked[0]["files_copied"] == 1
