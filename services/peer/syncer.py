"""fdatasync off the Requestor's loop.

Flushing hundreds of megabytes to disk takes seconds; the loop must keep
receiving meanwhile. The loop hands *duplicate* file descriptors (one for a
file, one per written file of a tree) to this worker thread over an inproc
PAIR socket (so closing the download's own fds can never race with a sync in
progress); the worker syncs them one after the other, closes them and answers
with the library id and the first error. Only then are the batch's books
persisted as held.

One thread, not a pool: sixteen threads made a batch of many small files durable
sooner, but each woke up for the GIL and the loop's own sends waited on them (a
tree of 3,000 small files downloaded three times slower).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import zmq


class Syncer:
    def __init__(self, ctx: zmq.Context[Any]) -> None:
        address = f"inproc://syncer-{id(self)}"
        self.socket: zmq.Socket[Any] = ctx.socket(zmq.PAIR)
        self.socket.bind(address)
        self._thread = threading.Thread(target=_worker, args=(ctx, address), daemon=True, name="syncer")
        self._thread.start()

    def submit(self, library_id: bytes, fds: list[int]) -> None:
        """Sync ``fds`` in the background; they are the Syncer's to close."""
        self.socket.send_pyobj((library_id, fds))

    def results(self) -> list[tuple[bytes, str]]:
        """(library id, error or "") for every finished sync."""
        out = []
        while self.socket.poll(0):
            out.append(self.socket.recv_pyobj())
        return out

    def close(self, timeout: float = 30.0) -> None:
        self.socket.send_pyobj(None)
        self._thread.join(timeout)
        self.socket.close(linger=0)


def _worker(ctx: zmq.Context[Any], address: str) -> None:
    socket: zmq.Socket[Any] = ctx.socket(zmq.PAIR)
    socket.connect(address)
    try:
        while (job := socket.recv_pyobj()) is not None:
            library_id, fds = job
            errors = [e for e in map(_sync, fds) if e]
            socket.send_pyobj((library_id, errors[0] if errors else ""))
    finally:
        socket.close(linger=0)


def _sync(fd: int) -> str:
    """fdatasync and close ``fd``: "" or what went wrong."""
    try:
        os.fdatasync(fd)
        return ""
    except OSError as exc:
        return f"fdatasync failed: {exc.strerror}"
    finally:
        os.close(fd)
