"""A child's CPU seconds, read from /proc, on a real process: what tells the Maestro a child that has not
beaten yet is starting slowly rather than stuck (see policy.py)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from services.supervisor.child import Child
from tests.polling import wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")


def test_cpu_seconds_grow_while_the_child_computes_and_are_none_once_it_is_gone(tmp_path: Path) -> None:
    child = Child("busy", "timeit", ["-n", "1000000000", "pass"], tmp_path / "busy.out")  # computes for minutes
    assert child.cpu_seconds() is None  # not spawned
    pid = child.spawn()
    try:
        first = wait_for(child.cpu_seconds, 60, "the child's CPU seconds")
        wait_for(lambda: (child.cpu_seconds() or 0.0) > first, 60, "the child's CPU seconds to grow")
    finally:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: child.exited() is not None, 60, "the child to be gone")
    assert child.cpu_seconds() is None
