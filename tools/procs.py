"""Starting and ending the processes of a local swarm (hub and players).

Used by tools/swarm.py, the benchmarks and the swarm tests. Every process
started here is recorded and ended by pid: SIGTERM, then SIGKILL after a
grace period.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

_ENDPOINT = re.compile(r"tcp://[0-9.]+:[0-9]+")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class ProcessGroup:
    """All processes one swarm started; ``stop_all`` ends every one of them."""

    logs: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None,
              prefix: tuple[str, ...] = ()) -> Proc:
        """Start ``python ARGS`` (after ``prefix``, such as ``ip netns exec NS``, which execs it: same pid)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{name}.out"
        out: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        popen = subprocess.Popen([*prefix, sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                 stdin=subprocess.DEVNULL)
        out.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def wait_for_endpoint(self, proc: Proc, timeout: float = 20.0) -> str:
        """Wait until ``proc`` prints the tcp endpoint it bound; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _ENDPOINT.search(proc.log_path.read_text(errors="replace"))
            if match:
                return match.group(0)
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}: see {proc.log_path}")
            time.sleep(0.02)
        raise TimeoutError(f"{proc.name} did not report its endpoint within {timeout}s: see {proc.log_path}")

    def stop(self, proc: Proc, grace: float = 5.0) -> None:
        if proc.alive():
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.popen.wait(5)
        else:
            proc.popen.wait()

    def stop_all(self, grace: float = 5.0) -> None:
        for proc in self.procs:
            if proc.alive():
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.popen.wait(5)


def end_piped(procs: list[subprocess.Popen[str]], grace: float = 10.0) -> None:
    """End processes that run until their stdin closes (the benchmarks' libtorrent and bare-link hosts): close
    every stdin, wait ``grace`` seconds for each, kill what is left, and close their stdout."""
    for proc in procs:
        if proc.stdin is not None:
            proc.stdin.close()
    for proc in procs:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
