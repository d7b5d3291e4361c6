"""The run folder holds sockets that take commands: only its owner may reach them, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime import config as config_mod
from services.runtime import rundir


@pytest.fixture
def loose_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("loose_umask")
def test_a_new_run_folder_is_its_owners_alone(tmp_path: Path) -> None:
    config = config_mod.load(tmp_path / "data")
    config.ensure_dirs()
    assert _mode(config.run_dir) == 0o700
    assert _mode(config.libs_dir) & 0o077  # the umask still rules the other folders: only the run folder is closed


@pytest.mark.usefixtures("loose_umask")
def test_a_run_folder_left_open_is_closed_again(tmp_path: Path) -> None:
    run = rundir.run_dir(tmp_path)
    run.mkdir(mode=0o777)
    os.chmod(run, 0o777)
    rundir.make(run)
    assert _mode(run) == 0o700
