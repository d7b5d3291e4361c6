"""A swarm on three hubs sharing one Redis survives a hub killed with SIGKILL and a Redis restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import require_redis
from tools.swarm import Player, Swarm, file_digest


def wait_books(player: Player, library_id: str, timeout: float = 120.0) -> None:
    """Poll until ``player`` holds a book of the library (or has all of it); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        have, _, status = player.progress(library_id)
        if have > 0 or status == "seeding":
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{player.name} got no book in {timeout}s")
        time.sleep(0.05)


def test_three_hubs_one_killed_then_redis_restarted_mid_download(
    tmp_path: Path, stuff: Callable[..., Path]
) -> None:
    require_redis()
    # Players re-announce every 2 s, so an emptied Redis is refilled within one interval.
    with Swarm(tmp_path / "swarm", hubs=3, store="redis", hub_args=("--interval", "2"),
               upload_limit=2 << 20) as swarm:
        swarm.start_hub()
        seed, first, second, late = (swarm.add_player(name) for name in ("seed", "first", "second", "late"))
        path = stuff("stuff.bin", 16 << 20)
        library = swarm.share(seed, path)
        assert library.hubs == tuple(swarm.hub_endpoints) and len(library.hubs) == 3
        for player in (seed, first, second, late):
            swarm.start_player(player)
        swarm.wait_serving([seed, first, second, late])
        swarm.give(first, library)
        wait_books(first, library.id_hex)
        swarm.kill_hub(0)
        swarm.give(second, library)  # joins with one of the library's hubs dead
        wait_books(second, library.id_hex)
        swarm.restart_redis()
        swarm.give(late, library)  # joins after Redis forgot everyone: the others announce again
        swarm.wait_complete(library, [first, second, late], timeout=240)
        digest = file_digest(path)
        for player in (first, second, late):
            copy = player.stuff_path(library.id_hex)
            assert copy is not None and file_digest(copy) == digest
        assert not swarm.hub_procs[0].alive() and all(proc.alive() for proc in swarm.hub_procs[1:])
