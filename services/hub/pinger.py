"""The hub's own reachability check: TCP connect attempts off the broker loop.

How this works: :class:`Pinger` runs in its own thread and owns everything
it touches: one PAIR socket connected to the broker over inproc, and the TCP
sockets of the connects in flight. The broker sends ``[b"ping", endpoint]``
or ``[b"stop"]``; the pinger answers ``[b"result", endpoint, b"1" | b"0"]``.
Connects are non-blocking and polled together with the PAIR socket, so many
run at once and none delays the broker; each gets ``timeout`` seconds.
Name resolution, when an endpoint names a host, blocks this thread only.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from dataclasses import dataclass

import zmq

from services.runtime.logs import get_logger
from services.wire.ids import InvalidEndpoint, parse_endpoint

PING = b"ping"
STOP = b"stop"
RESULT = b"result"
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY}

log = get_logger("services")


@dataclass
class _Attempt:
    endpoint: str
    deadline: float


def start_connect(endpoint: str) -> socket.socket | bool:
    """Begin a non-blocking TCP connect: a socket to poll for writability, or the result at once."""
    try:
        host, port = parse_endpoint(endpoint)
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (InvalidEndpoint, OSError):
        return False
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    code = sock.connect_ex(address)
    if code in _IN_PROGRESS:
        return sock
    sock.close()
    return code == 0


class Pinger:
    """TCP reachability checks for the broker; run :meth:`run` in a thread of its own."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], address: str, timeout: float = 2.0) -> None:
        self.context = context
        self.address = address
        self.timeout = timeout

    def start(self) -> threading.Thread:
        """Run in a new daemon thread; the broker must send STOP and join it."""
        thread = threading.Thread(target=self.run, name="hub-pinger", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        pair = self.context.socket(zmq.PAIR)
        pair.linger = 0
        pair.connect(self.address)
        attempts: dict[socket.socket, _Attempt] = {}
        poller = zmq.Poller()
        poller.register(pair, zmq.POLLIN)
        try:
            while self._step(pair, poller, attempts):
                pass
        finally:
            for sock in attempts:
                sock.close()
            pair.close()

    def _step(self, pair: zmq.Socket[bytes], poller: zmq.Poller, attempts: dict[socket.socket, _Attempt]) -> bool:
        now = time.monotonic()
        wait = min((a.deadline for a in attempts.values()), default=now + 1.0) - now
        events = dict(poller.poll(max(0, int(wait * 1000))))
        if pair in events:
            frames = pair.recv_multipart()
            if frames[0] == STOP:
                return False
            if frames[0] == PING and len(frames) == 2:
                self._begin(pair, poller, attempts, frames[1].decode("utf-8", "replace"))
        now = time.monotonic()
        for sock, attempt in list(attempts.items()):
            ready = sock.fileno() in events  # the poller reports plain sockets by file descriptor
            if ready or attempt.deadline <= now:
                ok = ready and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                self._finish(pair, poller, attempts, sock, ok)
        return True

    def _begin(
        self, pair: zmq.Socket[bytes], poller: zmq.Poller, attempts: dict[socket.socket, _Attempt], endpoint: str
    ) -> None:
        started = start_connect(endpoint)
        if isinstance(started, bool):
            pair.send_multipart([RESULT, endpoint.encode(), b"1" if started else b"0"])
            return
        attempts[started] = _Attempt(endpoint, time.monotonic() + self.timeout)
        poller.register(started, zmq.POLLOUT)

    @staticmethod
    def _finish(
        pair: zmq.Socket[bytes],
        poller: zmq.Poller,
        attempts: dict[socket.socket, _Attempt],
        sock: socket.socket,
        ok: bool,
    ) -> None:
        attempt = attempts.pop(sock)
        poller.unregister(sock)
        sock.close()
        log.debug("ping", endpoint=attempt.endpoint, reachable=ok)
        pair.send_multipart([RESULT, attempt.endpoint.encode(), b"1" if ok else b"0"])
