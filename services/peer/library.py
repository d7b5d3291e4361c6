"""Libraries (.lib files): the model, its validation, reading and writing.

A library file is ``MAGIC`` followed by a serialized ``LibraryFile``
(proto/library.proto). The ``info`` part is kept as the exact bytes read or
written, and the library id is BLAKE3 of those bytes, so an id never changes
when a file is read back. Every way a file can be wrong raises
:class:`LibraryError` with a one-line reason and what to do.

A .lib file comes from outside, so nothing in it is trusted:

- Reading: only a regular file (or a symlink to one) is opened. A FIFO, device
  or socket is refused by ``stat`` before opening, and again by ``fstat`` on
  the descriptor, which is opened non-blocking so a file swapped for a FIFO in
  between cannot hang the reader. The size cap is checked on the open file and
  at most ``MAX_LIBRARY_BYTES + 1`` bytes are read.
- Parsing: every field is range-checked (format version, name, size, book
  size, book count against ``MAX_BOOKS`` and against the hashes, hash
  algorithm, hubs, ``created_at``, creator). A name is one plain file name
  with room left for the suffixes a download adds, and no control characters.
- Trust: each hub may come with its CURVE key (``hub_keys``), and a library may
  be signed by its publisher; a signature that does not hold fails the parse
  (see :mod:`services.peer.signing`).
- Re-reading: :class:`LibraryCache` keeps parsed libraries by (device, inode,
  size, mtime_ns), so a loop that looks at the same files every turn parses
  each one once.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import blake3
from google.protobuf.message import DecodeError

from services.peer import signing
from services.peer.names import (
    CLASH_SUFFIX_LEN,
    FS_NAME_MAX,
    MAX_NAME_BYTES,
    PART_SUFFIX,
    LibraryError,
    check_name,
    control_character,
    quoted,
)
from services.peer.tree import FileEntry, Tree, check_path
from services.wire.curve import CurveKeyError, check_key
from services.wire.ids import parse_endpoint
from services.wire.pb import library_pb2

# The name rules (names.py) and the tree (tree.py) are part of this module's interface.
__all__ = [
    "AGAIN",
    "AUTO_MAX_BOOK",
    "AUTO_MIN_BOOK",
    "CLASH_SUFFIX_LEN",
    "FORMAT_FILE",
    "FORMAT_TREE",
    "FORMAT_VERSIONS",
    "FS_NAME_MAX",
    "HASH_LEN",
    "MAGIC",
    "MAX_BOOKS",
    "MAX_BOOK_SIZE",
    "MAX_CREATED_AT",
    "MAX_CREATOR_BYTES",
    "MAX_HUBS",
    "MAX_LIBRARY_BYTES",
    "MAX_NAME_BYTES",
    "MAX_TREE_BYTES",
    "MIN_BOOK_SIZE",
    "PART_SUFFIX",
    "FileEntry",
    "HashAlgorithm",
    "Library",
    "LibraryCache",
    "LibraryError",
    "Tree",
    "auto_book_size",
    "book_count",
    "book_span",
    "check_book_size",
    "check_books",
    "check_name",
    "control_character",
    "file_stamp",
    "hash_bytes",
    "library_stat",
    "make_library",
    "parse_library",
    "quoted",
    "read_library",
    "write_library",
]

MAGIC = b"EMMALIB\n"
FORMAT_FILE = 1  # the library describes one file
FORMAT_TREE = 2  # the library describes a tree of files (tree.py)
FORMAT_VERSIONS = (FORMAT_FILE, FORMAT_TREE)
HASH_LEN = 32
MIN_BOOK_SIZE = 16 * 1024
MAX_BOOK_SIZE = 64 * 1024 * 1024
AUTO_MIN_BOOK = 64 * 1024  # small files get more, smaller books: each relay hop of a swarm's tail is shorter
AUTO_MAX_BOOK = 16 * 1024 * 1024
# A peer announces what it has in one Bitfield frame, and a peer frame is at most 64 KiB
# (services.wire.framing.MAX_CONTROL_FRAME): 512,000 bits are 64,000 bytes, plus the message.
MAX_BOOKS = 512_000
# What a tree may add to a library: at most MAX_FILES entries of a root, two numbers and a path,
# which averages well under 100 bytes in any tree we have seen (a path of ~40 bytes).
MAX_TREE_BYTES = 64 * 1024 * 1024
# The largest valid library (its hashes and tree) plus room for the name, hubs and creator; the read cap.
MAX_LIBRARY_BYTES = MAX_BOOKS * HASH_LEN + MAX_TREE_BYTES + 64 * 1024
MAX_HUBS = 16
MAX_CREATED_AT = 253_402_300_799  # 9999-12-31 23:59:59 UTC, the last second datetime and strftime can show
MAX_CREATOR_BYTES = 256


class HashAlgorithm(enum.Enum):
    BLAKE3 = "blake3"
    SHA256 = "sha256"

    @property
    def pb(self) -> library_pb2.HashAlgorithm.ValueType:
        return library_pb2.BLAKE3 if self is HashAlgorithm.BLAKE3 else library_pb2.SHA256

    @classmethod
    def from_pb(cls, value: int) -> HashAlgorithm:
        if value == library_pb2.BLAKE3:
            return cls.BLAKE3
        if value == library_pb2.SHA256:
            return cls.SHA256
        raise LibraryError(f"unknown hash algorithm number {value}")


def hash_bytes(algorithm: HashAlgorithm, data: bytes | memoryview) -> bytes:
    """Digest of one book's bytes (both hashes release the GIL on large inputs)."""
    if algorithm is HashAlgorithm.BLAKE3:
        return blake3.blake3(data).digest()
    return hashlib.sha256(data).digest()


def book_count(size: int, book_size: int) -> int:
    """Number of books covering ``size`` bytes (0 for an empty stuff)."""
    return -(-size // book_size)


def book_span(index: int, size: int, book_size: int) -> tuple[int, int]:
    """(offset, length) of book ``index``; the last book may be shorter."""
    offset = index * book_size
    return offset, max(0, min(book_size, size - offset))


def auto_book_size(size: int) -> int:
    """A power of two giving about 1,000 to 4,000 books, within 64 KiB..16 MiB."""
    book = AUTO_MIN_BOOK
    while book < AUTO_MAX_BOOK and book_count(size, book) > 4000:
        book *= 2
    return book


def check_book_size(book_size: int) -> int:
    if not MIN_BOOK_SIZE <= book_size <= MAX_BOOK_SIZE or book_size & (book_size - 1):
        raise LibraryError(
            f"bad book size {book_size}: must be a power of two between {MIN_BOOK_SIZE} and {MAX_BOOK_SIZE}"
        )
    return book_size


def check_books(size: int, book_size: int) -> int:
    """Number of books of ``size`` bytes in ``book_size`` books, at most ``MAX_BOOKS``."""
    books = book_count(size, book_size)
    if books > MAX_BOOKS:
        enough = MIN_BOOK_SIZE
        while enough < MAX_BOOK_SIZE and book_count(size, enough) > MAX_BOOKS:
            enough *= 2
        advice = (f"use books of {enough} bytes or more (--book-size)" if book_count(size, enough) <= MAX_BOOKS
                  else f"no book size makes it fit: split the file into parts under {MAX_BOOKS * MAX_BOOK_SIZE} bytes")
        raise LibraryError(
            f"{size} bytes in books of {book_size} bytes makes {books} books; a library holds at most "
            f"{MAX_BOOKS} (they must fit one bitfield frame): {advice}"
        )
    return books


LIB_PREFIX = "lib_"


def library_file_name(library_id_hex: str) -> str:
    """The name of a library's file in ``<data>/libs/``: ``lib_<id>.lib``."""
    return f"{LIB_PREFIX}{library_id_hex}.lib"


@dataclass(frozen=True)
class Library:
    """A parsed, validated library. ``info_bytes`` is what the id hashes."""

    name: str
    size: int
    book_size: int
    hash_algorithm: HashAlgorithm
    book_hashes: bytes
    hubs: tuple[str, ...]
    created_at: int
    creator: str
    info_bytes: bytes = field(repr=False)
    hub_keys: tuple[str, ...] = ()  # the CURVE key of each hub (same order; "" or missing: that hub runs in clear)
    publisher_key: bytes = b""  # Ed25519; empty: unsigned
    signature: bytes = field(default=b"", repr=False)

    def hub_key(self, index: int) -> str:
        return self.hub_keys[index] if index < len(self.hub_keys) else ""
    tree: Tree | None = field(default=None, repr=False)  # format version 2: the files, where their books are

    @property
    def format_version(self) -> int:
        return FORMAT_FILE if self.tree is None else FORMAT_TREE

    @cached_property
    def id(self) -> bytes:
        return blake3.blake3(self.info_bytes).digest()

    @cached_property
    def id_hex(self) -> str:
        return self.id.hex()

    @property
    def books(self) -> int:
        return len(self.book_hashes) // HASH_LEN

    def book_hash(self, index: int) -> bytes:
        return self.book_hashes[index * HASH_LEN : (index + 1) * HASH_LEN]

    def book_span(self, index: int) -> tuple[int, int]:
        """(offset, length) of book ``index``: in the file, or in a tree in the file it lies in."""
        if self.tree is not None:
            return self.tree.book_span(index)
        return book_span(index, self.size, self.book_size)

    def verify_book(self, index: int, payload: memoryview | bytes) -> bool:
        """Whether ``payload`` is exactly book ``index``: right length and right hash.

        Touches only immutable state, so worker threads may call it.
        """
        if not 0 <= index < self.books or len(payload) != self.book_span(index)[1]:
            return False
        return hash_bytes(self.hash_algorithm, payload) == self.book_hash(index)

    @property
    def file_name(self) -> str:
        return library_file_name(self.id_hex)

    def to_bytes(self) -> bytes:
        wrapper = library_pb2.LibraryFile(
            format_version=self.format_version,
            info=self.info_bytes,
            hubs=list(self.hubs),
            created_at=self.created_at,
            creator=self.creator,
            hub_keys=list(self.hub_keys),
            publisher_key=self.publisher_key,
            signature=self.signature,
        )
        return MAGIC + wrapper.SerializeToString()

    def with_hubs(self, hubs: tuple[str, ...], hub_keys: tuple[str, ...] = ()) -> Library:
        """The same library (same id) listing other hubs, each with its CURVE key in ``hub_keys`` ("" or none:
        in clear), unsigned (a signature covers the hubs)."""
        _check_hubs(hubs)
        keys = hub_keys if any(hub_keys) else ()
        _check_hub_keys(keys, len(hubs))
        fields = {k: v for k, v in self.__dict__.items() if k not in ("id", "id_hex")}
        return Library(**{**fields, "hubs": hubs, "hub_keys": keys, "publisher_key": b"", "signature": b""})


def make_library(
    *,
    name: str,
    size: int,
    book_size: int,
    hash_algorithm: HashAlgorithm,
    book_hashes: bytes,
    hubs: tuple[str, ...],
    created_at: int,
    creator: str,
    hub_keys: tuple[str, ...] = (),
    publisher: signing.Publisher | None = None,
    files: Sequence[FileEntry] | None = None,
    empty_dirs: Sequence[str] = (),
) -> Library:
    """Build a library from its parts, validating them as a read would; signed by ``publisher`` if given.

    With ``files`` (a tree, format version 2) ``size`` must be their total; they are stored
    sorted by path whatever the order given, so equal trees have equal ids.
    """
    check_name(name)  # before protobuf sees it: a name that is not UTF-8 cannot even be encoded
    _check_creator(creator)
    for path in (*(f.path for f in files or ()), *empty_dirs):
        check_path(path)  # likewise
    try:
        info = library_pb2.LibraryInfo(
            name=name, size=size, book_size=book_size, hash_algorithm=hash_algorithm.pb, book_hashes=book_hashes
        )
        if files is not None:
            ordered = sorted(files, key=lambda f: f.path)
            info.paths.extend(f.path for f in ordered)
            info.file_sizes.extend(f.size for f in ordered)
            info.file_roots = b"".join(f.root for f in ordered)
            info.first_books.extend(f.first_book for f in ordered)
            info.empty_dirs.extend(sorted(empty_dirs))
        wrapper = library_pb2.LibraryFile(
            format_version=FORMAT_FILE if files is None else FORMAT_TREE,
            info=info.SerializeToString(),
            hubs=list(hubs),
            created_at=created_at,
            creator=creator,
            hub_keys=list(hub_keys),
        )
        if publisher is not None:
            wrapper.publisher_key = publisher.public
            wrapper.signature = publisher.sign(_signed(wrapper))
    except (TypeError, ValueError) as exc:  # a number out of its protobuf range, text that is not text
        raise LibraryError(f"cannot build a library from these parts: {exc}") from exc
    return parse_library(MAGIC + wrapper.SerializeToString())


AGAIN = "get the .lib again from whoever made it"


def parse_library(data: bytes) -> Library:
    """Parse and validate the bytes of a .lib file; every field is range-checked."""
    wrapper, info = _decode(data)
    check_name(info.name)
    check_book_size(info.book_size)
    algorithm = HashAlgorithm.from_pb(info.hash_algorithm)
    tree = None
    if wrapper.format_version == FORMAT_FILE:
        if info.paths or info.file_sizes or info.file_roots or info.first_books or info.empty_dirs:
            raise LibraryError(f"a version 1 library lists a tree of files: the file is corrupt; {AGAIN}")
        _check_hashes(info.size, info.book_size, len(info.book_hashes))
    else:
        tree = _tree(info)
    hubs = tuple(wrapper.hubs)
    _check_hubs(hubs)
    _check_created_at(wrapper.created_at)
    _check_creator(wrapper.creator)
    _check_hub_keys(tuple(wrapper.hub_keys), len(hubs))
    try:
        signing.check(_signed(wrapper), wrapper.publisher_key, wrapper.signature)
    except signing.SignatureError as exc:
        raise LibraryError(str(exc)) from None
    return Library(
        name=info.name,
        size=info.size,
        book_size=info.book_size,
        hash_algorithm=algorithm,
        book_hashes=bytes(info.book_hashes),
        hubs=hubs,
        created_at=wrapper.created_at,
        creator=wrapper.creator,
        info_bytes=bytes(wrapper.info),
        hub_keys=tuple(wrapper.hub_keys),
        publisher_key=bytes(wrapper.publisher_key),
        signature=bytes(wrapper.signature),
        tree=tree,
    )


def _signed(wrapper: library_pb2.LibraryFile) -> bytes:
    return signing.signed_message(wrapper.info, wrapper.hubs, wrapper.hub_keys, wrapper.created_at, wrapper.creator,
                                  wrapper.publisher_key, wrapper.format_version)


def _tree(info: library_pb2.LibraryInfo) -> Tree:
    """The tree of a version 2 library, every rule checked (tree.py), its books and size counted."""
    if len(info.book_hashes) % HASH_LEN:
        raise LibraryError(f"library book hashes are {len(info.book_hashes)} bytes, not a multiple of "
                           f"{HASH_LEN}: the file is truncated or corrupt; {AGAIN}")
    books = len(info.book_hashes) // HASH_LEN
    if books > MAX_BOOKS:
        raise LibraryError(f"library lists {books} books; at most {MAX_BOOKS}; {AGAIN}")
    try:
        tree = Tree.load(paths=list(info.paths), sizes=list(info.file_sizes), roots=info.file_roots,
                         first_books=list(info.first_books), empty_dirs=list(info.empty_dirs),
                         book_size=info.book_size, books=books)
    except LibraryError as exc:
        raise LibraryError(f"{exc}; {AGAIN}") from exc
    if tree.size != info.size:
        raise LibraryError(f"library says {info.size} bytes but its files hold {tree.size}: the file is "
                           f"corrupt; {AGAIN}")
    return tree


def _decode(data: bytes) -> tuple[library_pb2.LibraryFile, library_pb2.LibraryInfo]:
    if not data.startswith(MAGIC):
        raise LibraryError("not an Emma library (missing EMMALIB header)")
    wrapper = library_pb2.LibraryFile()
    try:
        wrapper.ParseFromString(data[len(MAGIC) :])
    except DecodeError as exc:
        raise LibraryError(f"library is truncated or corrupt (cannot decode); {AGAIN}") from exc
    if wrapper.format_version not in FORMAT_VERSIONS:
        raise LibraryError(
            f"unsupported library format version {wrapper.format_version} (this emma reads "
            f"{' and '.join(map(str, FORMAT_VERSIONS))}); a newer emma may read it"
        )
    info = library_pb2.LibraryInfo()
    try:
        info.ParseFromString(wrapper.info)
    except DecodeError as exc:
        raise LibraryError(f"library info is truncated or corrupt (cannot decode); {AGAIN}") from exc
    return wrapper, info


def _check_hashes(size: int, book_size: int, hash_bytes: int) -> None:
    expected = check_books(size, book_size)
    if hash_bytes != expected * HASH_LEN:
        raise LibraryError(
            f"library lists {hash_bytes // HASH_LEN} book hashes ({hash_bytes} bytes) but size {size} / "
            f"book size {book_size} needs {expected}: the file is truncated or corrupt; {AGAIN}"
        )


def _check_hubs(hubs: tuple[str, ...]) -> None:
    if len(hubs) > MAX_HUBS:
        raise LibraryError(f"library lists {len(hubs)} hubs; at most {MAX_HUBS} are allowed")
    for hub in hubs:
        if not (hub.isascii() and hub.isprintable()):
            raise LibraryError(f"bad hub endpoint in library: {quoted(hub)} is not plain ASCII text")
        try:
            parse_endpoint(hub)
        except ValueError as exc:  # InvalidEndpoint, and int() of an odd port
            raise LibraryError(f"bad hub endpoint in library: {exc}") from exc


def _check_hub_keys(keys: tuple[str, ...], hubs: int) -> None:
    if len(keys) > hubs:
        raise LibraryError(f"library names {len(keys)} hub keys for {hubs} hubs: the file is corrupt; {AGAIN}")
    for key in keys:
        if key:
            try:
                check_key(key, "hub key")
            except CurveKeyError as exc:
                raise LibraryError(f"{exc}; {AGAIN}") from None


def _check_created_at(created_at: int) -> None:
    if created_at > MAX_CREATED_AT:
        raise LibraryError(f"library created_at {created_at} is after the year 9999 (unix seconds at most "
                           f"{MAX_CREATED_AT}): the file is corrupt; {AGAIN}")


def _check_creator(creator: str) -> None:
    size = len(creator.encode(errors="replace"))
    if size > MAX_CREATOR_BYTES:
        raise LibraryError(f"library creator is {size} bytes, at most {MAX_CREATOR_BYTES}; {AGAIN}")
    if control_character(creator) is not None:
        raise LibraryError(f"library creator {quoted(creator)} contains a control character; {AGAIN}")


# -- reading files -------------------------------------------------------------------------------------------

Stamp = tuple[int, int, int, int]  # (st_dev, st_ino, st_size, st_mtime_ns) of the file a library was read from
_READ_CHUNK = 1024 * 1024
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def file_stamp(info: os.stat_result) -> Stamp:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def library_stat(path: Path) -> os.stat_result:
    """``stat`` of a would-be library file (symlinks followed), raising LibraryError."""
    try:
        return os.stat(path)
    except FileNotFoundError as exc:
        raise LibraryError(f"no such library file: {path}") from exc
    except OSError as exc:
        raise LibraryError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:  # a NUL in the path
        raise LibraryError(f"bad library path {quoted(str(path))}: {exc}") from exc


def _check_regular(path: Path, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise LibraryError(f"{path} is a directory, not a library file")
    if not stat.S_ISREG(info.st_mode):
        raise LibraryError(f"{path} is not a regular file (a FIFO, device or socket); give the path of a .lib file")
    if info.st_size > MAX_LIBRARY_BYTES:
        raise LibraryError(f"{path} is larger than any library could be ({info.st_size} bytes, at most "
                           f"{MAX_LIBRARY_BYTES}); it is not a library")


def _read_regular(path: Path) -> tuple[bytes, os.stat_result]:
    """The bytes of ``path`` if it is a regular file of at most MAX_LIBRARY_BYTES, and its fstat."""
    _check_regular(path, library_stat(path))  # a FIFO or device is never opened
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise LibraryError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        _check_regular(path, info)  # what was opened, if the path changed since the stat
        chunks: list[bytes] = []
        total = 0
        while total <= MAX_LIBRARY_BYTES:
            chunk = os.read(fd, min(_READ_CHUNK, MAX_LIBRARY_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise LibraryError(f"cannot read {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if total > MAX_LIBRARY_BYTES:
        raise LibraryError(f"{path} grew past {MAX_LIBRARY_BYTES} bytes while read; it is not a library")
    return b"".join(chunks), info


def _parse_at(path: Path, data: bytes) -> Library:
    try:
        return parse_library(data)
    except LibraryError as exc:
        raise LibraryError(f"{path}: {exc}") from exc


def read_library(path: Path) -> Library:
    """Read and validate a .lib file, raising LibraryError (never OSError).

    Only a regular file (or a symlink to one) of at most MAX_LIBRARY_BYTES is read; see the
    module docstring for how.
    """
    data, _ = _read_regular(path)
    return _parse_at(path, data)


class LibraryCache:
    """Parsed libraries by path, reused while the file's (device, inode, size, mtime_ns) stay the same.

    For a loop that looks at the same .lib files every turn: an unchanged file costs one ``stat``,
    not a read and a parse. A file rewritten in place to the same size within one tick of the file
    system's clock would be missed; ``write_library`` replaces a file by rename, a new inode.
    """

    def __init__(self) -> None:
        self._entries: dict[Path, tuple[Stamp, Library]] = {}

    def read(self, path: Path) -> Library:
        """As ``read_library``, without reading a file that has not changed since the last read."""
        stamp = file_stamp(library_stat(path))
        cached = self._entries.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        data, info = _read_regular(path)
        library = _parse_at(path, data)
        self._entries[path] = (file_stamp(info), library)
        return library

    def keep_only(self, paths: Iterable[Path]) -> None:
        """Forget every path not in ``paths`` (files gone since the last look)."""
        keep = set(paths)
        self._entries = {path: entry for path, entry in self._entries.items() if path in keep}

    def __len__(self) -> int:
        return len(self._entries)


def write_library(library: Library, path: Path) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half. What is at ``path`` is replaced
    only if it is a file (or a link): a device, FIFO or socket there raises FileExistsError, and stays (as root,
    `emma share --out /dev/full` replaced the device with a file)."""
    try:
        there = os.lstat(path).st_mode
    except FileNotFoundError:
        there = None
    if there is not None and not (stat.S_ISREG(there) or stat.S_ISLNK(there) or stat.S_ISDIR(there)):
        raise FileExistsError(errno.EEXIST, "it is a device, FIFO or socket, not a file; give the path of a file",
                              str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(library.to_bytes())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
