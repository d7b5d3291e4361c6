"""The files of a tree library (format version 2): paths, sizes, BLAKE3 roots, where their books are.

A tree lays its files end to end in book order, each starting on a new book: file i owns
books ``first_books[i]`` up to the next file's first book, the last of them possibly short,
and an empty file owns none. So a book lies in exactly one file, at
``(book - first_books[i]) * book_size`` in it, and ``file_of`` is one bisect.

Path rules (``check_path``), checked when a tree is made and again when one is loaded: a
path is relative and '/'-separated; no component is empty, ``.`` or ``..``; none starts with
``~``, holds a backslash, a NUL or another control character, or is longer than a file
name may be; at most ``MAX_DEPTH`` components and ``MAX_PATH_BYTES`` bytes. Dots inside a
name are plain characters (``release..v2.txt``). In a tree no path appears twice and no
file is also a folder of another path.

``Tree.load`` validates a tree of 100,000 files in well under a second: the checks run once
per path with string methods implemented in C, and the folder set is built from each
path's parent only until a known one is met.
"""

from __future__ import annotations

import bisect
import fnmatch
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.peer.names import MAX_NAME_BYTES, LibraryError, control_character, quoted

MAX_DEPTH = 64  # components in one path
MAX_PATH_BYTES = 4000  # bytes in one path (PATH_MAX is 4096 with the downloads folder in front)
ROOT_LEN = 32  # bytes of a BLAKE3 root
MAX_FILES = 512_000  # files (and, separately, empty folders) in one tree, as many as books in a library


@dataclass(frozen=True)
class FileEntry:
    """One file of a tree: where it goes, how long it is, its BLAKE3 root and its first book."""

    path: str
    size: int
    root: bytes
    first_book: int


def check_path(path: str) -> str:
    """A path inside a tree, as the module docstring says; LibraryError with the reason if not."""
    if not path or path.startswith("/"):
        raise LibraryError(f"bad path {quoted(path)} in tree: must be relative and not empty")
    bad = None if path.isprintable() else control_character(path)
    if bad is not None:
        what = "is not UTF-8" if "\ud800" <= bad <= "\udfff" else f"contains control character U+{ord(bad):04X}"
        raise LibraryError(f"bad path {quoted(path)} in tree: {what}")
    if "\\" in path:
        raise LibraryError(f"bad path {quoted(path)} in tree: contains a backslash (the separator is '/')")
    size = len(path.encode())
    if size > MAX_PATH_BYTES:
        raise LibraryError(f"bad path {quoted(path)} in tree: {size} bytes, at most {MAX_PATH_BYTES}")
    parts = path.split("/")
    if len(parts) > MAX_DEPTH:
        raise LibraryError(f"bad path {quoted(path)} in tree: {len(parts)} levels deep, at most {MAX_DEPTH}")
    for part in parts:
        if part in ("", ".", ".."):
            raise LibraryError(f"bad path {quoted(path)} in tree: no component may be empty, '.' or '..'")
        if part[0] == "~":
            raise LibraryError(f"bad path {quoted(path)} in tree: no component may start with '~'")
        if len(part) * 4 > MAX_NAME_BYTES and len(part.encode()) > MAX_NAME_BYTES:
            raise LibraryError(f"bad path {quoted(path)} in tree: the name {quoted(part)} is longer than "
                               f"{MAX_NAME_BYTES} bytes")
    return path


def _folders(paths: Iterable[str]) -> set[str]:
    """Every folder some path lies in (not the tree's own root)."""
    folders: set[str] = set()
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent and parent not in folders:
            folders.add(parent)
            parent = parent.rpartition("/")[0]
    return folders


@dataclass(frozen=True)
class Tree:
    """A validated tree. Sequences are parallel, indexed by file, in path order."""

    paths: tuple[str, ...]
    sizes: tuple[int, ...]
    roots: bytes
    first_books: tuple[int, ...]
    empty_dirs: tuple[str, ...]
    book_size: int
    books: int

    @classmethod
    def load(cls, *, paths: Sequence[str], sizes: Sequence[int], roots: bytes, first_books: Sequence[int],
             empty_dirs: Sequence[str], book_size: int, books: int) -> Tree:
        """Validate the arrays of a tree whose book hashes hold ``books`` books; LibraryError if wrong."""
        count = len(paths)
        if count > MAX_FILES or len(empty_dirs) > MAX_FILES:
            raise LibraryError(f"tree lists {count} files and {len(empty_dirs)} empty folders; "
                               f"at most {MAX_FILES} of each")
        if len(sizes) != count or len(first_books) != count or len(roots) != count * ROOT_LEN:
            raise LibraryError(f"tree lists {count} paths but {len(sizes)} sizes, {len(first_books)} first books "
                               f"and {len(roots) // ROOT_LEN} roots: the library is corrupt")
        for path in paths:
            check_path(path)
        for path in empty_dirs:
            check_path(path)
        _check_order(paths, "file")
        _check_order(empty_dirs, "empty folder")
        folders = _folders(paths)
        clash = next((p for p in paths if p in folders), None)
        if clash is not None:
            raise LibraryError(f"tree lists {quoted(clash)} both as a file and as a folder of other files")
        files = set(paths)
        for path in empty_dirs:
            if path in files or path in folders:
                raise LibraryError(f"tree lists {quoted(path)} as an empty folder, but it holds files or is one")
        _check_books(sizes, first_books, book_size, books)
        return cls(tuple(paths), tuple(sizes), bytes(roots), tuple(first_books), tuple(empty_dirs), book_size,
                   books)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def entry(self, index: int) -> FileEntry:
        return FileEntry(self.paths[index], self.sizes[index], self.root(index), self.first_books[index])

    def root(self, index: int) -> bytes:
        return self.roots[index * ROOT_LEN : (index + 1) * ROOT_LEN]

    def file_of(self, book: int) -> int:
        """The file book ``book`` lies in (the last of any files starting at that book: the others are empty)."""
        return bisect.bisect_right(self.first_books, book) - 1

    def book_span(self, book: int) -> tuple[int, int]:
        """(offset in its file, length) of ``book``."""
        index = self.file_of(book)
        offset = (book - self.first_books[index]) * self.book_size
        return offset, max(0, min(self.book_size, self.sizes[index] - offset))

    def books_of(self, index: int) -> range:
        first = self.first_books[index]
        return range(first, first - (-self.sizes[index] // self.book_size))

    def folders(self) -> list[str]:
        """Every folder to create, parents before children: those holding files and the empty ones."""
        return sorted(_folders(self.paths) | set(self.empty_dirs) | _folders(self.empty_dirs))

    def select(self, globs: Sequence[str]) -> list[int]:
        """Files whose path, or a folder it lies in, matches one of ``globs`` (none given: every file).

        ``*`` crosses folders (``fnmatch``), so ``*.json`` is every JSON file and ``shards``
        is everything in the folder ``shards``.
        """
        if not globs:
            return list(range(len(self.paths)))
        match = re.compile("|".join(f"(?:{fnmatch.translate(g.strip('/'))})" for g in globs)).match
        folders: dict[str, bool] = {"": False}

        def chosen(folder: str) -> bool:  # a folder matches, or one it lies in: each folder looked at once
            if folder not in folders:
                folders[folder] = bool(match(folder)) or chosen(folder.rpartition("/")[0])
            return folders[folder]

        return [index for index, path in enumerate(self.paths) if match(path) or chosen(path.rpartition("/")[0])]

    def books_of_files(self, files: Iterable[int]) -> list[int]:
        return [book for index in files for book in self.books_of(index)]


def _check_order(paths: Sequence[str], what: str) -> None:
    for before, after in itertools.pairwise(paths):
        if not before < after:
            why = "twice" if before == after else "out of order"
            raise LibraryError(f"tree lists the {what} {quoted(after)} {why}: the library is corrupt")


def _check_books(sizes: Sequence[int], first_books: Sequence[int], book_size: int, books: int) -> None:
    expected = 0
    for index, (size, first) in enumerate(zip(sizes, first_books, strict=True)):
        if first != expected:
            raise LibraryError(f"tree says file {index} starts at book {first}, but the files before it fill "
                               f"{expected} books: the library is corrupt")
        expected += -(-size // book_size)
        if expected > books:
            break
    if expected != books:
        raise LibraryError(f"tree's files fill {expected} books but the library lists {books} book hashes: "
                           f"the library is corrupt")
