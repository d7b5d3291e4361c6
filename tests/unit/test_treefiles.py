"""A tree download on real files: TreeFiles (books in place, bounded descriptors), the local data check
(localdata.py), and the Requestor's storage opening a tree in two steps."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from services.peer import catalog, treefiles
from services.peer import requestor_logic as rl
from services.peer.librarifier import librarify_tree
from services.peer.library import MIN_BOOK_SIZE, Library, write_library
from services.peer.localdata import CheckJob, check, copy_file, good_books
from services.peer.partfile import DiskError
from services.peer.state import LibraryRecord, State, Status
from services.peer.storage import Opened, Storage
from services.peer.treefiles import TreeFiles
from services.peer.writer import Outcome
from services.runtime.config import Config
from tests.polling import wait_for

BOOK = MIN_BOOK_SIZE
CONTENT = {
    "a/b/two-and-a-bit": random.Random(1).randbytes(2 * BOOK + 7),
    "a/one": random.Random(2).randbytes(BOOK),
    "empty": b"",
    "z": random.Random(3).randbytes(100),
}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source" / "tree"
    for rel, data in CONTENT.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "nothing here").mkdir()
    return root


@pytest.fixture
def library(source: Path) -> Library:
    return librarify_tree(source, hubs=(), book_size=BOOK)


def payload(library: Library, book: int) -> bytes:
    tree = library.tree
    assert tree is not None
    offset, length = library.book_span(book)
    return CONTENT[tree.paths[tree.file_of(book)]][offset : offset + length]


def write_all(files: TreeFiles, library: Library) -> None:
    for book in range(library.books):
        files.write(book, payload(library, book))


# -- TreeFiles -------------------------------------------------------------------------------------------

def test_create_makes_folders_and_sizes_only_the_selected_files(library: Library, tmp_path: Path) -> None:
    root = tmp_path / "dl" / "tree"
    files = TreeFiles.create(library, root, [0, 2])  # a/b/two-and-a-bit, empty
    files.close()
    assert (root / "a" / "b" / "two-and-a-bit").stat().st_size == 2 * BOOK + 7
    assert (root / "empty").stat().st_size == 0
    assert (root / "nothing here").is_dir() and not (root / "a" / "one").exists() and not (root / "z").exists()


def test_books_written_in_place_read_back_and_the_tree_ends_identical(library: Library, tmp_path: Path) -> None:
    root = tmp_path / "dl" / "tree"
    files = TreeFiles.create(library, root, range(4))
    write_all(files, library)
    assert files.finish() == root
    files.close()
    for rel, data in CONTENT.items():
        assert (root / rel).read_bytes() == data
    reader = TreeFiles(library, root, writable=False)
    try:
        assert all(reader.read(b, len(payload(library, b))) == payload(library, b) for b in range(library.books))
        assert reader.read(0, 5) is None and reader.read(library.books, BOOK) is None
    finally:
        reader.close()


def test_descriptors_stay_bounded_and_a_closed_written_file_is_still_synced(library: Library, tmp_path: Path) -> None:
    files = TreeFiles.create(library, tmp_path / "t", range(4))
    files.limit = 1
    write_all(files, library)
    assert len(files.open_fds) == 1 and len(files.retired) == 2  # two earlier written files, waiting for a sync
    fds = files.sync_fds()
    assert len(fds) == 3 and files.retired == [] and files.written == set()
    for fd in fds:
        os.fdatasync(fd)
        os.close(fd)
    assert files.sync_fds() == []
    files.close()


def test_open_limit_is_a_quarter_of_the_process_limit_within_bounds() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert treefiles.open_limit() == max(16, min(treefiles.MAX_OPEN, soft // 4))


def test_a_disk_without_room_for_the_tree_is_found_before_anything_is_written(
        library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(treefiles, "free_bytes", lambda path: 100)
    with pytest.raises(DiskError, match="disk full") as caught:
        TreeFiles.create(library, tmp_path / "t", range(4))
    assert caught.value.transient and not (tmp_path / "t" / "a" / "one").exists()


def test_a_link_where_a_file_goes_is_refused_not_written_through(library: Library, tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / "a").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (root / "a" / "one").symlink_to(victim)
    with pytest.raises(DiskError, match="a link is in the way"):
        TreeFiles.create(library, root, range(4))
    assert victim.read_bytes() == b"keep me"


# -- checking local data ---------------------------------------------------------------------------------

def test_good_books_keeps_what_matches_and_only_that(library: Library, tmp_path: Path) -> None:
    path = tmp_path / "two-and-a-bit"
    damaged = bytearray(CONTENT["a/b/two-and-a-bit"])
    damaged[BOOK + 3] ^= 0xFF
    path.write_bytes(bytes(damaged[: 2 * BOOK + 7]))
    assert good_books(library, 0, path) == [0, 2]
    path.write_bytes(bytes(damaged[: BOOK + 10]))  # short: the books it lacks are not good
    assert good_books(library, 0, path) == [0]
    assert good_books(library, 0, tmp_path / "missing") == []


def test_check_copies_a_file_another_library_holds_and_verifies_the_copy(library: Library, source: Path,
                                                                         tmp_path: Path) -> None:
    tree = library.tree
    assert tree is not None
    elsewhere = tmp_path / "other library" / "same.bin"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(CONTENT["a/b/two-and-a-bit"])
    liar = tmp_path / "liar.bin"
    liar.write_bytes(b"x" * 100)  # claims the root of "z" but holds other bytes
    root = tmp_path / "dl" / "tree"
    job = CheckJob(library, root, [0, 3], {tree.root(0): elsewhere, tree.root(3): liar})
    result = check(job)
    assert result.copied == 2 and sorted(result.good) == [0, 1, 2]  # the liar's copy is checked and dropped
    assert (root / "a" / "b" / "two-and-a-bit").read_bytes() == CONTENT["a/b/two-and-a-bit"]
    assert not list((root / "a" / "b").glob(".emma-copy*"))


def test_copy_file_replaces_the_target_whole(tmp_path: Path) -> None:
    source, target = tmp_path / "s", tmp_path / "deep" / "t"
    source.write_bytes(b"new" * 1000)
    target.parent.mkdir()
    target.write_bytes(b"old and longer" * 1000)
    copy_file(source, target)
    assert target.read_bytes() == b"new" * 1000


# -- the Requestor's storage -----------------------------------------------------------------------------

def add(config: Config, state: State, library: Library, only: tuple[str, ...] = ()) -> LibraryRecord:
    lib_path = config.libs_dir / library.file_name
    write_library(library, lib_path)
    catalog.record_download(state, config, library, lib_path, only)
    found = state.get(library.id_hex)
    assert found is not None
    return found


def open_when_checked(storage: Storage, state: State, library: Library) -> Opened:
    """Open the download as the Requestor's reloads do: again until its local data is checked."""

    def attempt() -> Opened | None:
        record = state.get(library.id_hex)
        assert record is not None
        return storage.open(record, 0.0)

    opened: Opened = wait_for(attempt, 30, "the local data check to end")
    return opened


def test_a_tree_opens_after_its_local_data_is_checked_with_the_books_in_place(
        config: Config, state: State, storage: Storage, library: Library) -> None:
    target = config.downloads_dir / "tree" / "a" / "one"
    target.parent.mkdir(parents=True)
    target.write_bytes(CONTENT["a/one"])
    record = add(config, state, library)
    assert storage.open(record, 0.0) is None  # being checked
    opened = open_when_checked(storage, state, library)
    tree = library.tree
    assert tree is not None
    kept = list(tree.books_of(tree.paths.index("a/one")))
    assert opened.have.indices() == kept and opened.wanted is None
    saved = state.get(library.id_hex)
    assert saved is not None and saved.have.indices() == kept and saved.fetched == 0
    missing = [b for b in range(library.books) if b not in kept]
    for book in missing:
        assert storage.land(rl.Land(library.id, book, "tcp://a:1", payload(library, book))).outcome is Outcome.WRITTEN
    assert storage.land(rl.Land(library.id, missing[0], "tcp://a:1", b"bad")).outcome is Outcome.BAD_HASH
    final = storage.finish(rl.Finish(library.id, len(missing), 1), 0.0)
    assert final == config.downloads_dir / "tree"
    for rel, data in CONTENT.items():
        assert (final / rel).read_bytes() == data
    done = state.get(library.id_hex)
    assert done is not None and done.status is Status.SEEDING


def test_a_selection_wants_only_its_files_books_and_a_new_one_is_noticed(
        config: Config, state: State, storage: Storage, library: Library) -> None:
    add(config, state, library, only=("z",))
    opened = open_when_checked(storage, state, library)
    assert opened.wanted is not None and opened.wanted.indices() == [library.books - 1]
    record = state.get(library.id_hex)
    assert record is not None and not storage.selection_changed(record)
    state.select(library.id_hex, ("z", "a/one"), Status.DOWNLOADING)
    record = state.get(library.id_hex)
    assert record is not None and storage.selection_changed(record)
