"""A player whose disk fills up, with real processes on small tmpfs mounts (so: root only).

The Requestor is never restarted: the download waits in ``error`` with its reason shown by the
Maestro, and goes on by itself once space is freed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.peer.librarifier import librarify
from services.peer.library import Library, write_library
from services.runtime import config as config_mod
from services.wire.pb import control_pb2
from tests.supervisor.test_maestro import Player, players, wait_for  # noqa: F401 - players is a fixture

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                       reason="mounts a small tmpfs to fill up: needs root and mount"),
]
# out of error: fetching, or waiting for its hub (none runs in these tests)
GOING = (control_pb2.DOWNLOADING, control_pb2.WAITING)
WAIT = 90.0  # the backoff reaches 16 s after 30 s of failures: room for a slow, shared machine


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``tmpfs("1m")``: a folder on a tmpfs of that size, unmounted at the end of the test."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], check=True)
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Write ``folder/filler`` until the disk is full (or only ``leave`` bytes are left)."""
    filler = folder / "filler"
    with open(filler, "wb") as out:
        try:
            while shutil.disk_usage(folder).free > leave:
                out.write(b"\0" * min(65536, max(4096, shutil.disk_usage(folder).free - leave)))
                out.flush()
        except OSError:
            pass  # full
    return filler


def library_of(tmp_path: Path, size: int) -> Library:
    stuff = tmp_path / "stuff.bin"
    stuff.write_bytes(os.urandom(size))
    return librarify(stuff, hubs=("tcp://127.0.0.1:9",))


def download(player: Player, library: Library) -> control_pb2.Download | None:
    return next((d for d in player.client.downloads() if d.library_id == library.id_hex), None)


def requestor(player: Player) -> control_pb2.ServiceStatus:
    return player.states()["requestor"]


def test_a_full_downloads_folder_makes_the_download_wait_and_it_resumes_when_space_is_freed(
        tmpfs, players, tmp_path):  # noqa: F811
    downloads = tmpfs("1m")
    data_dir = tmp_path / "p"
    config = config_mod.load(data_dir)
    config.set("paths.downloads", str(downloads))
    config.ensure_dirs()
    config.save()
    player = players("p")
    before = player.wait_running()["requestor"]
    library = library_of(tmp_path, 600_000)
    filler = fill(downloads, leave=300_000)
    write_library(library, data_dir / "libs" / library.file_name)

    waiting = wait_for(lambda: (r := requestor(player)).detail.startswith("disk full: ") and r, WAIT,
                       "the requestor to say the disk is full")
    assert waiting.detail.endswith(f" bytes free on {downloads}; free space and it resumes")
    assert wait_for(lambda: (d := download(player, library)) and d.state == control_pb2.FAILED, WAIT,
                    "the download in error")

    filler.unlink()
    part = downloads / f"{library.name}.part"
    wait_for(lambda: (d := download(player, library)) and d.state in GOING, WAIT, "the download to resume")
    assert part.stat().st_size == library.size and part.stat().st_blocks * 512 >= library.size  # reserved
    after = wait_for(lambda: (r := requestor(player)).detail.startswith("recovered; ") and r, WAIT,
                     "the requestor's next heartbeat")
    assert after.detail.startswith("recovered; last disk error: disk full: ")
    assert (after.pid, after.restarts, after.state) == (before.pid, 0, control_pb2.RUNNING)


def test_a_full_data_folder_never_leaves_the_requestor_fatal(tmpfs, players, tmp_path):  # noqa: F811
    mount = tmpfs("16m")
    player = players(f"{mount.name}/p")
    before = player.wait_running()["requestor"]
    library = library_of(tmp_path, 100_000)
    incoming = player.data_dir / "libs" / "incoming.tmp"  # not *.lib: not looked at yet
    write_library(library, incoming)
    filler = fill(mount)
    incoming.rename(player.data_dir / "libs" / library.file_name)  # dropped while state.db cannot grow

    waiting = wait_for(lambda: (r := requestor(player)).detail.startswith("disk full: ") and r, WAIT,
                       "the requestor to say the data folder is full")
    assert f" bytes free on {player.data_dir}" in waiting.detail
    assert (waiting.pid, waiting.restarts) == (before.pid, 0)

    filler.unlink()
    wait_for(lambda: (d := download(player, library)) and d.state in GOING, WAIT,
             "the library to be added and downloading")
    after = requestor(player)
    assert (after.pid, after.restarts, after.state) == (before.pid, 0, control_pb2.RUNNING)
