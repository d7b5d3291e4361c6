"""Fixtures shared by the unit tests: a data directory's settings and its state.db."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.peer.state import State
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
