"""The reference for bench_pair: a bare pyzmq pread -> send -> recv -> BLAKE3 -> pwrite pipeline.

Two processes on loopback, no protocol, no picker, no state: the fastest this
machine moves a verified file with the same building blocks. bench_pair runs
it in the same run as Emma so their ratio is meaningful on any machine.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import blake3
import zmq

CHUNK = 512 * 1024
WINDOW = 16


def _sender(path: str, endpoint: str) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.connect(endpoint)
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            identity, request = router.recv_multipart()
            offset = int(request)
            if offset < 0:
                return
            router.send_multipart([identity, request, os.pread(fd, CHUNK, offset)], copy=False)
    finally:
        os.close(fd)
        router.close(linger=0)
        ctx.term()


def run(source: Path, target: Path) -> float:
    """Move ``source`` to ``target`` through the pipeline; returns the seconds it took."""
    size = source.stat().st_size
    ctx: zmq.Context[Any] = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    port = dealer.bind_to_random_port("tcp://127.0.0.1")
    sender = multiprocessing.get_context("spawn").Process(target=_sender, args=(str(source), f"tcp://127.0.0.1:{port}"))
    sender.start()
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        offsets = list(range(0, size, CHUNK))
        dealer.send(b"0")  # wait for the sender to connect before starting the clock
        dealer.recv_multipart()
        started = time.monotonic()
        pending = 0
        for offset in offsets[:WINDOW]:
            dealer.send(str(offset).encode())
            pending += 1
        next_index = min(WINDOW, len(offsets))
        while pending:
            request, payload = dealer.recv_multipart(copy=False)
            pending -= 1
            if next_index < len(offsets):
                dealer.send(str(offsets[next_index]).encode())
                next_index += 1
                pending += 1
            blake3.blake3(payload.buffer).digest()
            os.pwrite(fd, payload.buffer, int(request.bytes))
        elapsed = time.monotonic() - started
        dealer.send(b"-1")
    finally:
        os.close(fd)
        sender.join(10)
        if sender.is_alive():  # the run failed before the sender was told to stop
            sender.kill()
            sender.join()
        dealer.close(linger=0)
        ctx.term()
    return elapsed
