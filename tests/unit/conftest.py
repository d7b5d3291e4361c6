"""Fixtures shared by the unit tests: a data directory's settings, its state.db, the Requestor's Storage on it, and
a library recorded there as a download."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.peer import catalog
from services.peer.library import Library, write_library
from services.peer.state import LibraryRecord, State
from services.peer.storage import Storage
from services.runtime.config import Config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    conf = Config(data_dir=tmp_path / "data", values={})
    conf.ensure_dirs()
    conf.downloads_dir.mkdir()  # as a player that has downloaded before has it (ensure_dirs leaves it to downloads)
    return conf


@pytest.fixture
def state(config: Config) -> Iterator[State]:
    db = State(config.state_db)
    yield db
    db.close()


@pytest.fixture
def storage(state: State) -> Iterator[Storage]:
    opened = Storage(state)
    yield opened
    opened.close()


def recorded_download(config: Config, state: State, library: Library) -> LibraryRecord:
    """``library`` written into libs/ and recorded in state.db as a download, as `emma get` records one."""
    lib_path = config.libs_dir / library.file_name
    write_library(library, lib_path)
    catalog.record_download(state, config, library, lib_path)
    found = state.get(library.id_hex)
    assert found is not None
    return found
