"""Libraries (.lib files): the model, its validation, reading and writing.

A library file is ``MAGIC`` followed by a serialized ``LibraryFile``
(proto/library.proto). The ``info`` part is kept as the exact bytes read or
written, and the library id is BLAKE3 of those bytes, so an id never changes
when a file is read back. Every way a file can be wrong raises
:class:`LibraryError` with a one-line reason.
"""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import blake3
from google.protobuf.message import DecodeError

from services.wire.ids import InvalidEndpoint, parse_endpoint
from services.wire.pb import library_pb2

MAGIC = b"EMMALIB\n"
FORMAT_VERSION = 1
HASH_LEN = 32
MIN_BOOK_SIZE = 16 * 1024
MAX_BOOK_SIZE = 64 * 1024 * 1024
AUTO_MIN_BOOK = 64 * 1024  # small files get more, smaller books: each relay hop of a swarm's tail is shorter
AUTO_MAX_BOOK = 16 * 1024 * 1024
MAX_LIBRARY_BYTES = 64 * 1024 * 1024
MAX_NAME_LEN = 255
MAX_HUBS = 16


class LibraryError(ValueError):
    """A library that cannot be used, with a one-line reason."""


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


def check_name(name: str) -> str:
    """A stuff name must be a plain file name: no separator, not absolute, no ``..``."""
    if not name or name in {".", ".."} or len(name.encode()) > MAX_NAME_LEN:
        raise LibraryError(f"bad stuff name {name!r}: must be a plain file name of 1-255 bytes")
    if "/" in name or "\\" in name or "\x00" in name or name.startswith("~"):
        raise LibraryError(f"bad stuff name {name!r}: must not contain a path separator")
    if ".." in name:
        raise LibraryError(f"bad stuff name {name!r}: must not contain '..'")
    return name


def check_book_size(book_size: int) -> int:
    if not MIN_BOOK_SIZE <= book_size <= MAX_BOOK_SIZE or book_size & (book_size - 1):
        raise LibraryError(
            f"bad book size {book_size}: must be a power of two between {MIN_BOOK_SIZE} and {MAX_BOOK_SIZE}"
        )
    return book_size


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

    @cached_property
    def id(self) -> bytes:
        return blake3.blake3(self.info_bytes).digest()

    @cached_property
    def id_hex(self) -> str:
        return self.id.hex()

    @property
    def books(self) -> int:
        return book_count(self.size, self.book_size)

    def book_hash(self, index: int) -> bytes:
        return self.book_hashes[index * HASH_LEN : (index + 1) * HASH_LEN]

    def book_span(self, index: int) -> tuple[int, int]:
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
        return f"lib_{self.id_hex}.lib"

    def to_bytes(self) -> bytes:
        wrapper = library_pb2.LibraryFile(
            format_version=FORMAT_VERSION,
            info=self.info_bytes,
            hubs=list(self.hubs),
            created_at=self.created_at,
            creator=self.creator,
        )
        return MAGIC + wrapper.SerializeToString()

    def with_hubs(self, hubs: tuple[str, ...]) -> Library:
        """The same library (same id) listing other hubs."""
        _check_hubs(hubs)
        fields = {k: v for k, v in self.__dict__.items() if k not in ("id", "id_hex")}
        return Library(**{**fields, "hubs": hubs})


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
) -> Library:
    """Build a library from its parts, validating them as a read would."""
    info = library_pb2.LibraryInfo(
        name=name, size=size, book_size=book_size, hash_algorithm=hash_algorithm.pb, book_hashes=book_hashes
    )
    wrapper = library_pb2.LibraryFile(
        format_version=FORMAT_VERSION,
        info=info.SerializeToString(),
        hubs=list(hubs),
        created_at=created_at,
        creator=creator,
    )
    return parse_library(MAGIC + wrapper.SerializeToString())


def parse_library(data: bytes) -> Library:
    """Parse and validate the bytes of a .lib file."""
    if not data.startswith(MAGIC):
        raise LibraryError("not an Emma library (missing EMMALIB header)")
    wrapper = library_pb2.LibraryFile()
    try:
        wrapper.ParseFromString(data[len(MAGIC) :])
    except DecodeError as exc:
        raise LibraryError("library is truncated or corrupt (cannot decode)") from exc
    if wrapper.format_version != FORMAT_VERSION:
        raise LibraryError(
            f"unsupported library format version {wrapper.format_version} (this emma reads {FORMAT_VERSION})"
        )
    info = library_pb2.LibraryInfo()
    try:
        info.ParseFromString(wrapper.info)
    except DecodeError as exc:
        raise LibraryError("library info is truncated or corrupt (cannot decode)") from exc
    check_name(info.name)
    check_book_size(info.book_size)
    algorithm = HashAlgorithm.from_pb(info.hash_algorithm)
    expected = book_count(info.size, info.book_size)
    if len(info.book_hashes) != expected * HASH_LEN:
        raise LibraryError(
            f"library lists {len(info.book_hashes) // HASH_LEN} book hashes "
            f"({len(info.book_hashes)} bytes) but size {info.size} / book size {info.book_size} "
            f"needs {expected}: the file is truncated or corrupt"
        )
    hubs = tuple(wrapper.hubs)
    _check_hubs(hubs)
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
    )


def _check_hubs(hubs: tuple[str, ...]) -> None:
    if len(hubs) > MAX_HUBS:
        raise LibraryError(f"library lists {len(hubs)} hubs; at most {MAX_HUBS} are allowed")
    for hub in hubs:
        try:
            parse_endpoint(hub)
        except InvalidEndpoint as exc:
            raise LibraryError(f"bad hub endpoint in library: {exc}") from exc


def read_library(path: Path) -> Library:
    """Read and validate a .lib file, raising LibraryError (never OSError)."""
    try:
        if path.is_dir():
            raise LibraryError(f"{path} is a directory, not a library file")
        if path.stat().st_size > MAX_LIBRARY_BYTES:
            raise LibraryError(f"{path} is larger than any library could be")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise LibraryError(f"no such library file: {path}") from exc
    except OSError as exc:
        raise LibraryError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return parse_library(data)
    except LibraryError as exc:
        raise LibraryError(f"{path}: {exc}") from exc


def write_library(library: Library, path: Path) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(library.to_bytes())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
