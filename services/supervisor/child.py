"""Process mechanics of one supervised child: spawn, poll, terminate, kill.

No policy and no waiting here (see policy.py: when to signal, when to kill). Children are started with the parent-death
signal set to SIGKILL (Linux prctl), so a Maestro killed outright takes its
children with it; the children also check their parent in every heartbeat.
A child's stdout and stderr go to its ``.out`` file, rolled over at each spawn
once past its size limit (``logs.rotate_out``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

from services.runtime.logs import rotate_out

PR_SET_PDEATHSIG = 1
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the heartbeat's parent check still ends the child


class Child:
    """One OS process running a service module."""

    def __init__(self, service: str, module: str, args: list[str], log_path: Path) -> None:
        self.service = service
        self.module = module
        self.args = args
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid if self.popen else 0

    def spawn(self, env: dict[str, str] | None = None) -> int:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        rotate_out(self.log_path)
        with open(self.log_path, "ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}, preexec_fn=_die_with_parent, start_new_session=False,
            )
        return self.popen.pid

    def exited(self) -> int | None:
        """The exit status if the process has ended (reaping it), else None."""
        if self.popen is None:
            return None
        return self.popen.poll()

    def cpu_seconds(self) -> float | None:
        """CPU seconds (user and system) the running process has used, from /proc; None if it cannot be read
        (not Linux, or the process is gone)."""
        if self.popen is None:
            return None
        try:
            with open(f"/proc/{self.popen.pid}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()  # after the command name, which may hold spaces
        except OSError:
            return None
        try:
            return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14 and 15)
        except (IndexError, ValueError):
            return None

    def terminate(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
