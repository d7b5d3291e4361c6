"""Hostile .lib files: what is not a regular file, fields out of range, names that would reach a screen.

Every case must end in a LibraryError with a reason (never a hang, a MemoryError or another
exception), and the Requestor's look at libs/ must not parse an unchanged file twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from services.peer import catalog
from services.peer import library as library_mod
from services.peer.librarifier import librarify
from services.peer.library import (
    FORMAT_FILE,
    HASH_LEN,
    MAGIC,
    MAX_BOOKS,
    MAX_CREATED_AT,
    MAX_CREATOR_BYTES,
    MAX_LIBRARY_BYTES,
    MAX_NAME_BYTES,
    MIN_BOOK_SIZE,
    PART_SUFFIX,
    HashAlgorithm,
    Library,
    LibraryCache,
    LibraryError,
    book_count,
    make_library,
    parse_library,
    read_library,
    write_library,
)
from services.peer.partfile import PartFile, final_path, partial_path
from services.peer.state import LibraryRecord, State, Status
from services.runtime.config import Config
from services.wire.pb import library_pb2

BOOK = MIN_BOOK_SIZE
U64_MAX = 2**64 - 1


def raw(*, name: str = "movie.mkv", size: int = 2 * BOOK + 5, book_size: int = BOOK, hashes: bytes | None = None,
        hubs: tuple[str, ...] = ("tcp://10.0.0.5:7070",), created_at: int = 1, creator: str = "t") -> bytes:
    """Bytes of a .lib built by hand, past every check make_library does."""
    books = book_count(size, book_size)
    info = library_pb2.LibraryInfo(name=name, size=size, book_size=book_size, hash_algorithm=library_pb2.BLAKE3,
                                   book_hashes=b"\x01" * HASH_LEN * books if hashes is None else hashes)
    wrapper = library_pb2.LibraryFile(format_version=FORMAT_FILE, info=info.SerializeToString(), hubs=list(hubs),
                                      created_at=created_at, creator=creator)
    return MAGIC + wrapper.SerializeToString()


def sample(**overrides: Any) -> Library:
    parts: dict[str, Any] = {"name": "movie.mkv", "size": 10, "book_size": BOOK,
                             "hash_algorithm": HashAlgorithm.BLAKE3, "book_hashes": b"\x02" * HASH_LEN,
                             "hubs": ("tcp://10.0.0.5:7070",), "created_at": 1_700_000_000, "creator": "emma test"}
    parts.update(overrides)
    return make_library(**parts)


# --- what is opened -------------------------------------------------------------------------------------------


def test_a_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "x.lib"
    os.mkfifo(fifo)
    with pytest.raises(LibraryError, match="not a regular file") as caught:
        read_library(fifo)
    assert str(fifo) in str(caught.value)


def test_a_fifo_swapped_in_after_the_stat_does_not_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stat said 'regular file' (as if the path changed just after): the open must not block on the FIFO."""
    regular = tmp_path / "real.lib"
    write_library(sample(), regular)
    fifo = tmp_path / "x.lib"
    os.mkfifo(fifo)
    monkeypatch.setattr(library_mod, "library_stat", lambda path: os.stat(regular))
    with pytest.raises(LibraryError, match="not a regular file"):
        read_library(fifo)


def test_a_symlink_to_dev_zero_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "zero.lib"
    link.symlink_to("/dev/zero")
    with pytest.raises(LibraryError, match="not a regular file"):
        read_library(link)
    with pytest.raises(LibraryError, match="not a regular file"):
        LibraryCache().read(link)


def test_a_symlink_to_a_regular_library_is_read(tmp_path: Path) -> None:
    target = tmp_path / "real.lib"
    write_library(sample(), target)
    link = tmp_path / "link.lib"
    link.symlink_to(target)
    assert read_library(link) == sample()


def test_a_file_over_the_cap_is_refused_from_its_size(tmp_path: Path) -> None:
    path = tmp_path / "big.lib"
    with open(path, "wb") as handle:
        handle.write(raw())
        handle.truncate(MAX_LIBRARY_BYTES + 1)  # sparse: a read of it would take long, the refusal does not
    with pytest.raises(LibraryError, match=f"at most {MAX_LIBRARY_BYTES}"):
        read_library(path)


def test_a_nul_in_the_path_is_a_library_error(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="bad library path"):
        read_library(tmp_path / "a\x00b.lib")


# --- every field range-checked --------------------------------------------------------------------------------


@pytest.mark.parametrize("created_at", [MAX_CREATED_AT + 1, 2**63, U64_MAX])
def test_created_at_past_year_9999_is_refused(created_at: int) -> None:
    with pytest.raises(LibraryError, match="after the year 9999"):
        parse_library(raw(created_at=created_at))


def test_created_at_bounds_are_accepted() -> None:
    assert parse_library(raw(created_at=0)).created_at == 0
    assert parse_library(raw(created_at=MAX_CREATED_AT)).created_at == MAX_CREATED_AT


def test_make_library_refuses_numbers_protobuf_cannot_hold() -> None:
    with pytest.raises(LibraryError, match="cannot build"):
        sample(created_at=2**64)
    with pytest.raises(LibraryError, match="cannot build"):
        sample(size=-1)


def test_more_books_than_a_bitfield_frame_holds_is_refused() -> None:
    size = (MAX_BOOKS + 1) * BOOK
    with pytest.raises(LibraryError, match=f"makes {MAX_BOOKS + 1} books; a library holds at most {MAX_BOOKS}"):
        parse_library(raw(size=size, hashes=b""))
    with pytest.raises(LibraryError, match="use books of 32768 bytes or more"):
        parse_library(raw(size=size, hashes=b""))


def test_a_size_no_book_size_can_hold_is_refused() -> None:
    with pytest.raises(LibraryError, match="no book size makes it fit"):
        parse_library(raw(size=U64_MAX, book_size=64 * 1024 * 1024, hashes=b""))


def test_librarify_checks_the_book_count_before_hashing(tmp_path: Path) -> None:
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as handle:
        handle.truncate((MAX_BOOKS + 1) * BOOK)  # 7.8 GiB of holes: hashing it would take minutes
    with pytest.raises(LibraryError, match="use books of"):
        librarify(path, hubs=("tcp://10.0.0.5:7070",), book_size=BOOK)


@pytest.mark.parametrize("hub", ["tcp://hub:\u00b2", "tcp://hub:\u0663", "tcp://[fe80::1%\x1b[31m]:7070",
                                 "tcp://h\u00e9llo:7070", "tcp://hub:7070\n"])
def test_hubs_that_are_not_plain_ascii_endpoints_are_refused(hub: str) -> None:
    with pytest.raises(LibraryError, match="bad hub endpoint"):
        parse_library(raw(hubs=(hub,)))


@pytest.mark.parametrize("creator", ["emma\x1b[2J", "a\nb", "x" * (MAX_CREATOR_BYTES + 1)])
def test_bad_creators_are_refused(creator: str) -> None:
    with pytest.raises(LibraryError, match="library creator"):
        parse_library(raw(creator=creator))


# --- names -------------------------------------------------------------------------------------------------------


CONTROL_NAMES = ["evil\x1b[2Jname", "two\nlines", "carriage\rreturn", "tab\there", "del\x7fete", "c1\x9bcsi",
                 "line\u2028separator", "para\u2029graph", "exe.\u202etxt", "isolate\u2066x"]


@pytest.mark.parametrize("name", CONTROL_NAMES)
def test_control_characters_in_names_are_refused(name: str) -> None:
    with pytest.raises(LibraryError, match="control character U\\+"):
        parse_library(raw(name=name))
    with pytest.raises(LibraryError, match="control character"):
        sample(name=name)


def test_a_name_that_is_not_utf8_is_refused_not_a_crash(tmp_path: Path) -> None:
    path = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xff.bin"))
    path.write_bytes(b"x" * 10)
    with pytest.raises(LibraryError, match=r"is not UTF-8.*rename the file"):
        librarify(path, hubs=("tcp://10.0.0.5:7070",))


@pytest.mark.parametrize("length", [MAX_NAME_BYTES + 1, 250, 255])
def test_names_leave_room_for_the_suffixes_a_download_adds(length: int) -> None:
    with pytest.raises(LibraryError, match=rf"{length} bytes, at most {MAX_NAME_BYTES}.*'\.part'"):
        parse_library(raw(name="x" * length))


def test_the_longest_name_gets_its_part_and_clash_files(tmp_path: Path) -> None:
    """A 246-byte name: its .part file is created, and a clash with an existing file is renamed aside."""
    library = sample(name="n" * MAX_NAME_BYTES)
    stuff = tmp_path / library.name
    part = PartFile.open(library, stuff)
    part.close()
    assert partial_path(stuff).name == library.name + PART_SUFFIX and partial_path(stuff).exists()
    stuff.write_bytes(b"someone else's file")
    clash = final_path(partial_path(stuff), library)
    clash.write_bytes(b"")  # the file system takes the name
    assert len(clash.name.encode()) == 255


def test_dots_inside_a_name_are_fine() -> None:
    assert parse_library(raw(name="release..v2.txt")).name == "release..v2.txt"


# --- the cache ------------------------------------------------------------------------------------------------


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """The paths of the files parsed by reads (not by make_library), in order."""
    calls: list[Path] = []
    real = library_mod._parse_at

    def counting(path: Path, data: bytes) -> Library:
        calls.append(path)
        return real(path, data)

    monkeypatch.setattr(library_mod, "_parse_at", counting)
    yield calls


def test_the_cache_parses_an_unchanged_file_once(tmp_path: Path, parses: list[Path]) -> None:
    path = tmp_path / "a.lib"
    write_library(sample(), path)
    cache = LibraryCache()
    assert cache.read(path) == cache.read(path) == sample()
    assert len(parses) == 1


def test_the_cache_reads_a_replaced_file_again(tmp_path: Path, parses: list[Path]) -> None:
    path = tmp_path / "a.lib"
    write_library(sample(), path)
    cache = LibraryCache()
    cache.read(path)
    write_library(sample(name="other.mkv"), path)  # same size, new inode (written by rename)
    assert cache.read(path).name == "other.mkv"
    assert len(parses) == 2


def test_the_cache_forgets_files_that_are_gone(tmp_path: Path) -> None:
    cache = LibraryCache()
    for name in ("a.lib", "b.lib"):
        write_library(sample(), tmp_path / name)
        cache.read(tmp_path / name)
    cache.keep_only([tmp_path / "b.lib"])
    assert len(cache) == 1


# --- the Requestor's look at libs/ ----------------------------------------------------------------------------


def test_a_dropped_library_is_imported_and_then_not_parsed_again(config: Config, state: State,
                                                                 parses: list[Path]) -> None:
    library = sample()
    write_library(library, config.libs_dir / "dropped.lib")
    folder = catalog.DropFolder()
    folder.scan(config, state)  # reads dropped.lib, writes lib_<id>.lib in its place
    folder.scan(config, state)  # lib_<id>.lib of a library state.db holds: known by its name, not read
    record = state.get(library.id_hex)
    assert record is not None and record.status is Status.DOWNLOADING
    assert sorted(p.name for p in config.libs_dir.iterdir()) == [library.file_name]
    assert len(parses) == 1
    for _ in range(10):
        folder.scan(config, state)
    assert len(parses) == 1  # an unchanged folder costs a stat a file, not a parse


def test_the_folder_is_looked_at_again_only_when_it_changed(config: Config, state: State,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    folder = catalog.DropFolder()
    assert folder.changed(config, time.time())  # never scanned
    write_library(sample(), config.libs_dir / "first.lib")
    folder.scan(config, state)  # imports it as lib_<id>.lib: the folder changed since the scan began
    assert folder.changed(config, time.time())
    folder.scan(config, state)
    later = time.time() + 1.0  # past the clock tick of the last change
    assert not folder.changed(config, later)
    asked: list[str] = []
    real_get = state.get

    def get(library_id: str) -> LibraryRecord | None:
        asked.append(library_id)
        return real_get(library_id)

    monkeypatch.setattr(state, "get", get)
    folder.scan(config, state)  # a full look at an unchanged folder: a stat a file, nothing asked of state.db
    assert asked == []
    stats: list[str] = []
    real_stamp = catalog._stamp

    def stamp(path: Path | str) -> None:
        stats.append(str(path))

    monkeypatch.setattr(catalog, "_stamp", stamp)
    folder.scan(config, state, full=False)  # the folder changed: files known by name and inode are not looked at
    assert stats == []
    monkeypatch.setattr(catalog, "_stamp", real_stamp)
    other = sample(name="other.bin")
    write_library(other, config.libs_dir / "second.lib")
    assert folder.changed(config, later)
    folder.scan(config, state)
    assert state.get(other.id_hex) is not None
    assert folder.imported == 2 and folder.recorded[-1] == other.id_hex  # what the Requestor opens, alone


def test_fifo_and_device_links_in_libs_are_set_aside_once(config: Config, state: State) -> None:
    os.mkfifo(config.libs_dir / "fifo.lib")
    (config.libs_dir / "zero.lib").symlink_to("/dev/zero")
    folder = catalog.DropFolder()
    with capture_logs() as logs:
        folder.scan(config, state)
        folder.scan(config, state)
    assert sorted(p.name for p in config.libs_dir.iterdir()) == ["fifo.lib.bad", "zero.lib.bad"]
    rejected = [e for e in logs if e["event"] == "library_rejected"]
    assert len(rejected) == 2 and all("not a regular file" in e["error"] for e in rejected)
    assert state.all() == []


def test_a_bad_file_that_cannot_be_renamed_is_logged_once(config: Config, state: State,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (config.libs_dir / "junk.lib").write_bytes(b"not a library")

    def refuse(self: Path, target: Path) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "rename", refuse)
    folder = catalog.DropFolder()
    with capture_logs() as logs:
        for _ in range(3):
            folder.scan(config, state)
    assert [e["event"] for e in logs] == ["library_rejected"]
    assert "delete or fix it" in logs[0]["hint"]


def test_import_writes_the_parsed_library_not_whatever_the_path_is_now(config: Config, tmp_path: Path) -> None:
    library = sample()
    source = tmp_path / "gone.lib"
    os.mkfifo(source)  # the file read a moment ago is now a FIFO: copying it would block
    target = catalog.import_library(config, library, source)
    assert read_library(target) == library
