"""The messages waiting on a socket, taken without blocking and without a receive that finds nothing.

A loop that empties a socket by receiving until ``zmq.Again`` pays for one failed receive each
time: pyzmq builds and raises an exception for it, several times the cost of a message received
(about 20 us against 3 here). The busiest loops (a Requestor hearing from every remote, a
Distributor answering every requester) empty a socket on most turns, so they ask the socket's
events first, as ``zmq_poll`` itself does. Flags are plain ints here: pyzmq's enum flags cost an
enum operation on every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import zmq

_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)


def waiting(socket: zmq.Socket[Any], limit: int) -> Iterator[list[zmq.Frame]]:
    """Up to ``limit`` whole messages ``socket`` holds now, each as its frames (never copied)."""
    for _ in range(limit):
        if not int(socket.getsockopt(_EVENTS)) & _POLLIN:
            return
        try:
            frame = socket.recv(_NOBLOCK, copy=False)
            frames = [frame]
            while frame.more:  # a message's frames arrive together: the rest are there
                frame = socket.recv(_NOBLOCK, copy=False)
                frames.append(frame)
        except zmq.Again:  # the events said otherwise; nothing is lost, it is read next turn
            return
        yield frames
