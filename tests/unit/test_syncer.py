"""The Syncer: fdatasync of a batch's files off the loop, each descriptor closed, the first error said."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from services.peer.syncer import Syncer


@pytest.fixture
def syncer() -> Iterator[Syncer]:
    ctx: zmq.Context[Any] = zmq.Context()
    running = Syncer(ctx)
    yield running
    running.close()
    ctx.term()


def results(syncer: Syncer) -> list[tuple[bytes, str]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if syncer.socket.poll(100):
            return syncer.results()
    raise AssertionError("no answer from the Syncer")


def closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_a_batch_of_files_is_synced_and_every_descriptor_closed(syncer: Syncer, tmp_path: Path) -> None:
    fds = []
    for index in range(40):
        fd = os.open(tmp_path / f"f{index}", os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(fd, b"x" * 1000, 0)
        fds.append(fd)
    syncer.submit(b"L" * 32, fds)
    assert results(syncer) == [(b"L" * 32, "")]
    assert all(closed(fd) for fd in fds)


def test_a_failed_sync_is_said_and_the_others_still_closed(syncer: Syncer, tmp_path: Path) -> None:
    read_end, write_end = os.pipe()  # fdatasync of a pipe fails (EINVAL)
    good = os.open(tmp_path / "good", os.O_RDWR | os.O_CREAT, 0o644)
    syncer.submit(b"M" * 32, [good, read_end])
    [(library_id, error)] = results(syncer)
    assert library_id == b"M" * 32 and error.startswith("fdatasync failed: ")
    assert closed(good) and closed(read_end)
    os.close(write_end)
