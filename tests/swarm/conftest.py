"""Fixtures for multi-process swarm tests: every process is ended by pid at teardown."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.swarm import Player, Swarm, make_stuff


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[Swarm]:
    with Swarm(tmp_path / "swarm") as running:
        running.start_hub()
        yield running
        for proc in running.group.procs:
            if proc.alive():
                continue
            assert proc.popen.returncode in (0, -15, -9), f"{proc.name} died with {proc.popen.returncode}"


@pytest.fixture
def clear_swarm(tmp_path: Path) -> Iterator[Swarm]:
    """An open swarm with encryption off: for tests that play many players by id, with no keys."""
    with Swarm(tmp_path / "swarm", encryption=False) as running:
        running.start_hub()
        yield running


@pytest.fixture
def stuff(tmp_path: Path):
    def make(name: str, size: int, seed: int = 1) -> Path:
        path = tmp_path / name
        make_stuff(path, size, seed)
        return path

    return make


def persisted_books(player: Player, library_id: str) -> set[int]:
    """Books state.db says are written (what a restarted requestor must never fetch again)."""
    record = player.record(library_id)
    return set(record.have.indices()) if record else set()


def log_events(player: Player, kind: str, event: str) -> list[dict[str, Any]]:
    return events_in(player.data_dir / "logs" / f"{kind}.log", event)


def events_in(path: Path, event: str) -> list[dict[str, Any]]:
    """The records named ``event`` in one JSON-lines log (none if it does not exist; odd lines skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            out.append(record)
    return out
