"""state.db's schema version: files of older versions migrate forward on open, a newer file is refused.

The files in tests/data were written by the code of their time (not rebuilt here):
``state-0-before-selections.db`` before `emma get --only` existed, ``state-0-with-selections.db``
before state.db had a version, ``state-99-newer.db`` a current file marked as written by a (future)
schema 99. Each holds a download of 3 books (0 and 2 held, 2 fetched) and a seeded library of 1 book.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.peer.bitfield import Bitfield
from services.peer.state import SCHEMA_VERSION, State, StateVersionError, Status

DATA = Path(__file__).resolve().parent.parent / "data"
DOWNLOAD, SEEDED = "ab" * 32, "cd" * 32


@pytest.mark.parametrize("name", ["state-0-before-selections.db", "state-0-with-selections.db"])
def test_an_older_file_is_migrated_on_open_and_keeps_every_library(tmp_path: Path, name: str) -> None:
    path = tmp_path / "state.db"
    shutil.copy(DATA / name, path)
    state = State(path)
    try:
        assert state.version() == SCHEMA_VERSION
        download, seeded = state.get(DOWNLOAD), state.get(SEEDED)
        assert download is not None and seeded is not None
        assert (download.status, download.have.indices(), download.fetched, download.only) == (
            Status.DOWNLOADING, [0, 2], 2, ())
        assert (seeded.status, seeded.have.complete, seeded.name) == (Status.SEEDING, True, "song")
        state.select(DOWNLOAD, ("a/*",), Status.DOWNLOADING)  # a column the oldest file did not have
    finally:
        state.close()
    again = State(path)
    try:
        record = again.get(DOWNLOAD)
        assert record is not None and record.only == ("a/*",)
    finally:
        again.close()


def test_a_new_file_gets_the_current_version(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    try:
        assert state.version() == SCHEMA_VERSION
    finally:
        state.close()


def test_a_newer_file_is_refused_naming_both_versions_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    shutil.copy(DATA / "state-99-newer.db", path)
    before = path.read_bytes()
    with pytest.raises(StateVersionError) as info:
        State(path)
    message = str(info.value)
    assert "version 99" in message and f"this Emma's {SCHEMA_VERSION}" in message
    assert "upgrade Emma" in message
    assert path.read_bytes() == before


def test_a_reader_does_not_migrate_and_says_how_to(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    shutil.copy(DATA / "state-0-with-selections.db", path)
    with pytest.raises(StateVersionError, match="start the player once to migrate it"):
        State.reader(path)
    assert State.reader(tmp_path / "none.db") is None


def test_changed_says_when_another_connection_committed(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    mine, theirs = State(path), State(path)
    try:
        assert not mine.changed()
        mine.upsert(library_id=DOWNLOAD, lib_path=Path("/l"), stuff_path=Path("/s"), name="n", size=1, books=1,
                    status=Status.DOWNLOADING, have=Bitfield(1))
        assert not mine.changed()  # its own writes are not news
        assert theirs.changed()
        assert not theirs.changed()
        theirs.set_status(DOWNLOAD, Status.PAUSED)
        assert mine.changed()
    finally:
        mine.close()
        theirs.close()
