"""Tree libraries (format version 2): the format, its path rules, book ranges across files, scale."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.peer.librarifier import librarify, librarify_tree, walk
from services.peer.library import (
    FORMAT_FILE,
    FORMAT_TREE,
    HASH_LEN,
    MAGIC,
    FileEntry,
    HashAlgorithm,
    Library,
    LibraryError,
    make_library,
    parse_library,
)
from services.peer.tree import MAX_DEPTH, MAX_PATH_BYTES, check_path
from services.wire.pb import library_pb2

BOOK = 16 * 1024
HUB = ("tcp://127.0.0.1:7070",)


def tree_library(sizes: dict[str, int], empty_dirs: tuple[str, ...] = (), book: int = BOOK) -> Library:
    """A tree of files of these sizes with made-up hashes (one per book) and roots."""
    entries, first = [], 0
    for path in sorted(sizes):
        entries.append(FileEntry(path, sizes[path], blake3.blake3(path.encode()).digest(), first))
        first += -(-sizes[path] // book)
    return make_library(name="tree", size=sum(sizes.values()), book_size=book, hash_algorithm=HashAlgorithm.BLAKE3,
                        book_hashes=bytes(HASH_LEN) * first, hubs=HUB, created_at=1, creator="t", files=entries,
                        empty_dirs=empty_dirs)


def rewrite_info(library: Library, **changes: object) -> bytes:
    """The library's bytes with fields of its info changed (the id changes with them)."""
    info = library_pb2.LibraryInfo()
    info.ParseFromString(library.info_bytes)
    for key, value in changes.items():
        if isinstance(value, list):
            info.ClearField(key)  # type: ignore[arg-type]
            getattr(info, key).extend(value)
        else:
            setattr(info, key, value)
    wrapper = library_pb2.LibraryFile(format_version=FORMAT_TREE, info=info.SerializeToString(), hubs=list(HUB))
    return MAGIC + wrapper.SerializeToString()


# -- the format ------------------------------------------------------------------------------------------

def test_round_trip_keeps_the_tree_and_the_id() -> None:
    library = tree_library({"a/b.bin": 3 * BOOK + 1, "a/c/empty": 0, "z.txt": 10}, empty_dirs=("e", "a/d"))
    again = parse_library(library.to_bytes())
    assert again.id == library.id and again.format_version == FORMAT_TREE
    assert again.tree is not None and again.tree == library.tree
    assert again.tree.paths == ("a/b.bin", "a/c/empty", "z.txt")
    assert again.tree.empty_dirs == ("a/d", "e")
    assert again.books == 5 and again.size == 3 * BOOK + 11
    assert again.tree.entry(2) == FileEntry("z.txt", 10, blake3.blake3(b"z.txt").digest(), 4)


def test_files_are_stored_in_path_order_whatever_order_they_come_in() -> None:
    one = tree_library({"b": 1, "a": 1})
    entries = [FileEntry("b", 1, bytes(32), 1), FileEntry("a", 1, bytes(32), 0)]
    other = make_library(name="tree", size=2, book_size=BOOK, hash_algorithm=HashAlgorithm.BLAKE3,
                         book_hashes=bytes(64), hubs=HUB, created_at=1, creator="t", files=entries)
    assert other.tree is not None and other.tree.paths == ("a", "b")
    assert one.tree is not None and one.tree.paths == other.tree.paths


def test_version_1_files_still_load(tmp_path: Path) -> None:
    path = tmp_path / "one.bin"
    path.write_bytes(os.urandom(3 * BOOK))
    library = librarify(path, hubs=HUB, book_size=BOOK)
    again = parse_library(library.to_bytes())
    assert again.format_version == FORMAT_FILE and again.tree is None and again.books == 3
    assert again.book_span(2) == (2 * BOOK, BOOK)


def test_a_version_1_library_with_tree_fields_is_refused() -> None:
    library = tree_library({"a": 1})
    wrapper = library_pb2.LibraryFile(format_version=FORMAT_FILE, info=library.info_bytes, hubs=list(HUB))
    with pytest.raises(LibraryError, match="version 1 library lists a tree"):
        parse_library(MAGIC + wrapper.SerializeToString())


def test_a_zero_length_tree_and_an_empty_folder_are_libraries() -> None:
    library = tree_library({"empty": 0, "dir/also": 0}, empty_dirs=("nothing",))
    again = parse_library(library.to_bytes())
    assert again.books == 0 and again.size == 0 and again.tree is not None and len(again.tree) == 2
    bare = tree_library({})
    assert parse_library(bare.to_bytes()).tree == bare.tree


@pytest.mark.parametrize(("change", "error"), [
    ({"file_sizes": [BOOK * 2 + 1, 1]}, "file 1 starts at book 2, but the files before it fill 3 books"),
    ({"file_sizes": [2 * BOOK, BOOK + 1]}, "fill 4 books but the library lists 3"),
    ({"first_books": [0, 1]}, "starts at book 1"),
    ({"paths": ["b", "a"]}, "out of order"),
    ({"paths": ["a", "a"]}, "twice"),
    ({"paths": ["a", "../b"]}, "'.' or '..'"),
    ({"paths": ["a"]}, "1 paths but 2 sizes"),
    ({"file_roots": bytes(33)}, "roots"),
    ({"size": 5}, "says 5 bytes"),
    ({"empty_dirs": ["a"]}, "empty folder"),
])
def test_a_tampered_tree_fails_to_load(change: dict[str, object], error: str) -> None:
    library = tree_library({"a": 2 * BOOK, "b": 1})
    with pytest.raises(LibraryError, match=error):
        parse_library(rewrite_info(library, **change))


def test_a_file_that_is_also_a_folder_is_refused() -> None:
    with pytest.raises(LibraryError, match="both as a file and as a folder"):
        tree_library({"a": 1, "a-b": 1, "a/b": 1})


# -- path rules ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["release..v2.txt", "a/b/c", "..hidden", "a/.dotfile", "x/...", "é/ü 😀.txt",
                                  "name with spaces", "a\u00a0b"])
def test_good_paths(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize(("path", "error"), [
    ("", "relative and not empty"),
    ("/etc/passwd", "relative and not empty"),
    ("a//b", "empty"),
    ("a/", "empty"),
    ("./a", r"'\.'"),
    ("a/../b", r"'\.\.'"),
    ("..", r"'\.\.'"),
    ("a\0b", "control character U\\+0000"),
    ("a\nb", "control character U\\+000A"),
    ("a\u202eb", "control character U\\+202E"),
    ("a\udcffb", "not UTF-8"),
    ("a\\b", "backslash"),
    ("~/x", "start with '~'"),
    ("x" * 247, "longer than 246 bytes"),
    ("a/" * MAX_DEPTH + "b", "levels deep"),
    (("abcdefg/" * 600)[:MAX_PATH_BYTES + 1], "bytes, at most"),
])
def test_bad_paths(path: str, error: str) -> None:
    with pytest.raises(LibraryError, match=error):
        check_path(path)


def test_bad_paths_are_refused_when_making_and_when_loading() -> None:
    with pytest.raises(LibraryError, match=r"'\.\.'"):
        tree_library({"../evil": 1})
    library = tree_library({"fine": 1})
    with pytest.raises(LibraryError, match=r"'\.\.'"):
        parse_library(rewrite_info(library, paths=[".."]))


# -- book ranges across file boundaries ------------------------------------------------------------------

def test_book_ranges_across_files() -> None:
    library = tree_library({"a": 2 * BOOK + 5, "b": 0, "c": BOOK, "d": 0, "e": 7})
    tree = library.tree
    assert tree is not None and library.books == 5
    assert [tree.file_of(b) for b in range(5)] == [0, 0, 0, 2, 4]
    assert [library.book_span(b) for b in range(5)] == [(0, BOOK), (BOOK, BOOK), (2 * BOOK, 5), (0, BOOK), (0, 7)]
    assert [list(tree.books_of(i)) for i in range(5)] == [[0, 1, 2], [], [3], [], [4]]


def test_verify_book_checks_the_short_last_book_of_each_file(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / "d").mkdir(parents=True)
    data = {"d/x": os.urandom(BOOK + 3), "y": os.urandom(5)}
    for rel, content in data.items():
        (root / rel).write_bytes(content)
    library = librarify_tree(root, hubs=HUB, book_size=BOOK)
    assert library.books == 3
    assert library.verify_book(0, data["d/x"][:BOOK]) and library.verify_book(1, data["d/x"][BOOK:])
    assert library.verify_book(2, data["y"]) and not library.verify_book(2, data["y"] + b"!")


# -- making a tree ---------------------------------------------------------------------------------------

def test_librarify_tree_roots_are_blake3_of_each_whole_file(tmp_path: Path) -> None:
    root = tmp_path / "stuff"
    (root / "deep/er").mkdir(parents=True)
    (root / "empty_dir").mkdir()
    contents = {"big": os.urandom(5 * BOOK + 9), "deep/er/one": os.urandom(BOOK), "deep/zero": b""}
    for rel, content in contents.items():
        (root / rel).write_bytes(content)
    for algorithm in HashAlgorithm:
        library = librarify_tree(root, hubs=HUB, book_size=BOOK, algorithm=algorithm)
        tree = library.tree
        assert tree is not None and tree.paths == tuple(sorted(contents)) and tree.empty_dirs == ("empty_dir",)
        for index, path in enumerate(tree.paths):
            assert tree.root(index) == blake3.blake3(contents[path]).digest()
        for book in range(library.books):
            index = tree.file_of(book)
            offset, length = library.book_span(book)
            assert library.verify_book(book, contents[tree.paths[index]][offset:offset + length])


def test_walk_skips_links_sockets_and_fifos_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "stuff"
    root.mkdir()
    (root / "file").write_bytes(b"x")
    (root / "link").symlink_to(root / "file")
    (root / "dirlink").symlink_to(tmp_path)
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "sock"))
        warnings: list[str] = []
        walked = walk(root, warnings.append)
    finally:
        sock.close()
    assert walked.files == [("file", 1)] and walked.skipped == 4
    assert sorted(w.split(":")[0].rsplit("/", 1)[1] for w in warnings) == ["dirlink", "fifo", "link", "sock"]
    assert any("symbolic link" in w for w in warnings) and any("socket, FIFO or device" in w for w in warnings)


def test_sharing_a_tree_with_a_bad_name_says_which_file(tmp_path: Path) -> None:
    root = tmp_path / "stuff"
    root.mkdir()
    (root / "bad\nname").write_bytes(b"x")
    with pytest.raises(LibraryError, match=r"rename .*bad"):
        librarify_tree(root, hubs=HUB)


# -- scale -----------------------------------------------------------------------------------------------

def test_a_hundred_thousand_files_need_under_100_bytes_each_beyond_their_book_hashes() -> None:
    count = 100_000
    sizes = {f"shard-{i // 1000:03d}/part-{i:06d}.bin": 1000 + i % 5000 for i in range(count)}
    library = tree_library(sizes)
    metadata = len(library.to_bytes()) - library.books * HASH_LEN
    assert library.books == count
    assert metadata / count <= 100, f"{metadata / count:.1f} bytes per file"
    again = parse_library(library.to_bytes())
    assert again.tree is not None and len(again.tree) == count and again.tree.file_of(count - 1) == count - 1


# -- selections ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("globs", "chosen"), [
    ((), ["a/b/c.json", "a/d.bin", "e.json", "shards/x/1.bin", "shards/y.bin"]),
    (("*.json",), ["a/b/c.json", "e.json"]),
    (("shards",), ["shards/x/1.bin", "shards/y.bin"]),
    (("shards/",), ["shards/x/1.bin", "shards/y.bin"]),
    (("a/b", "e.json"), ["a/b/c.json", "e.json"]),
    (("sha?ds/x",), ["shards/x/1.bin"]),
    (("nothing",), []),
])
def test_select_matches_paths_and_the_folders_they_lie_in(globs: tuple[str, ...], chosen: list[str]) -> None:
    library = tree_library({p: 1 for p in ("a/b/c.json", "a/d.bin", "e.json", "shards/x/1.bin", "shards/y.bin")})
    tree = library.tree
    assert tree is not None
    assert [tree.paths[i] for i in tree.select(globs)] == chosen


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_mutated_tree_library_loads_or_fails_with_a_library_error(data: st.DataObject) -> None:
    raw = bytearray(tree_library({"a/b": BOOK + 1, "c": 0, "d/e/f": 7}, empty_dirs=("g",)).to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(len(MAGIC), len(raw) - 1))
        raw[index] = data.draw(st.integers(0, 255))
    try:
        library = parse_library(bytes(raw))
    except LibraryError:
        return
    if library.tree is not None:  # whatever loads is a consistent tree
        assert sum(len(library.tree.books_of(i)) for i in range(len(library.tree))) == library.books
        for book in range(library.books):
            offset, length = library.book_span(book)
            assert 0 < length <= library.book_size and offset % library.book_size == 0
