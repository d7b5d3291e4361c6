"""A throwaway ``redis-server`` for tests, benchmarks and the local swarm: started on a free port
in a directory of its own, ended by pid.

Debian's package is ``redis-server``; :func:`missing_reason` says how to get it when it is absent.
The server keeps nothing on disk (no RDB, no AOF), so a restart starts empty, as a Redis
that lost its data would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

BINARY = "redis-server"


def missing_reason() -> str:
    """Empty when redis-server can be started here; otherwise one line saying how to enable it."""
    if shutil.which(BINARY) is None:
        return f"{BINARY} is not installed; install it (Debian: apt-get install redis-server) to run the Redis parts"
    return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server on 127.0.0.1; :meth:`stop` (or the ``with`` block) ends it by pid."""

    def __init__(self, directory: Path, port: int = 0) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.popen is not None, "not started"
        return self.popen.pid

    def start(self, timeout: float = 30.0) -> RedisServer:
        """Start (or start again, on the same port) and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - handed to the child
        self.popen = subprocess.Popen(
            [BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if self.popen.poll() is not None:
                        raise RuntimeError(f"redis-server exited with {self.popen.returncode}: see "
                                           f"{self.directory / 'redis.log'}") from None
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"redis-server did not answer within {timeout}s") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """End the server by pid (SIGTERM, then SIGKILL after 10 s; or ``sig`` at once)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        os.kill(self.popen.pid, sig)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
