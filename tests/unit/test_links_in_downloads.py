"""A link already standing in the downloads folder, where a partial file or a tree's folder goes: never followed.

O_NOFOLLOW guards only the last component of a path, so a link put where the folder ``a`` of a tree
goes (``a -> /somewhere/else``) used to take the tree's files ``a/...`` there: created, sized and
written outside the download folder, and read from there to be served.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.peer.library import Library
from services.peer.localdata import CheckJob, check
from services.peer.partfile import DiskError, PartFile, partial_path
from services.peer.treefiles import TreeFiles, open_beneath
from tests.unit.test_distributor_logic import library as file_library
from tests.unit.test_treefiles import CONTENT, library, payload, source

__all__ = ["library", "source"]  # fixtures


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    outside = tmp_path / "elsewhere"
    (outside / "b").mkdir(parents=True)
    (outside / "one").write_bytes(b"keep me")
    return outside


def linked_root(tmp_path: Path, elsewhere: Path) -> Path:
    root = tmp_path / "downloads" / "tree"
    root.mkdir(parents=True)
    (root / "a").symlink_to(elsewhere, target_is_directory=True)
    return root


def test_a_link_where_a_folder_goes_is_refused_not_written_through(
    library: Library, tmp_path: Path, elsewhere: Path
) -> None:
    root = linked_root(tmp_path, elsewhere)
    with pytest.raises(DiskError, match="a link is in the way"):
        TreeFiles.create(library, root, range(len(CONTENT)))
    assert sorted(p.name for p in elsewhere.iterdir()) == ["b", "one"]
    assert (elsewhere / "one").read_bytes() == b"keep me" and not any((elsewhere / "b").iterdir())


def test_books_are_neither_written_nor_read_through_a_linked_folder(
    library: Library, tmp_path: Path, elsewhere: Path
) -> None:
    root = linked_root(tmp_path, elsewhere)
    files = TreeFiles(library, root, writable=True)
    tree = library.tree
    assert tree is not None
    book = tree.first_books[tree.paths.index("a/one")]
    with pytest.raises(DiskError, match="a link is in the way"):
        files.write(book, payload(library, book))
    assert (elsewhere / "one").read_bytes() == b"keep me"
    reader = TreeFiles(library, root, writable=False)
    assert reader.read(book, len(payload(library, book))) is None
    files.close()
    reader.close()


def test_the_local_data_check_copies_nothing_through_a_linked_folder(
    library: Library, source: Path, tmp_path: Path, elsewhere: Path
) -> None:
    root = linked_root(tmp_path, elsewhere)
    tree = library.tree
    assert tree is not None
    index = tree.paths.index("a/one")
    result = check(CheckJob(library, root, [index], {tree.root(index): source / "a" / "one"}))
    assert result.good == [] and result.copied == 0 and "link" in " ".join(result.errors)
    assert (elsewhere / "one").read_bytes() == b"keep me"


def test_open_beneath_opens_plain_folders(tmp_path: Path) -> None:
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "x" / "y" / "f").write_bytes(b"hi")
    fd = open_beneath(tmp_path, "x/y/f", os.O_RDONLY)
    try:
        assert os.read(fd, 2) == b"hi"
    finally:
        os.close(fd)


def test_a_link_where_a_partial_file_goes_is_refused_not_truncated(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    stuff = tmp_path / "downloads" / "movie.mkv"
    stuff.parent.mkdir()
    partial_path(stuff).symlink_to(victim)
    with pytest.raises(DiskError, match="a link is in the way"):
        PartFile.open(file_library(), stuff)
    assert victim.read_bytes() == b"keep me"


def test_a_fifo_where_a_partial_file_goes_is_refused(tmp_path: Path) -> None:
    stuff = tmp_path / "movie.mkv"
    os.mkfifo(partial_path(stuff))
    with pytest.raises(DiskError, match="other than a file"):
        PartFile.open(file_library(), stuff)
