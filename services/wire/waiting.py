"""The messages waiting on sockets: which sockets hold some, and taking them without a receive that finds nothing.

A loop that empties a socket by receiving until ``zmq.Again`` pays for one failed receive each
time: pyzmq builds and raises an exception for it, several times the cost of a message received
(about 20 us against 3 here). The busiest loops (a Requestor hearing from every remote, a
Distributor answering every requester) empty a socket on most turns, so they ask the socket's
events first, as ``zmq_poll`` itself does. Flags are plain ints here: pyzmq's enum flags cost an
enum operation on every call.

Which sockets hold messages (``SocketWatch``): ``zmq_poll`` asks every socket's events before it
waits and again after, a system call or two each time, so a Requestor polling a socket per remote
paid for every remote on every turn, whether it had said anything or not (on a VM, a third of the
Requestor's CPU on a slow link, where turns are many and carry few messages). The watch waits on the
sockets' notification descriptors with one epoll and asks the events of only the sockets that may
have news: those whose descriptor fired, and those used since they were last asked. A descriptor
fires when the socket's mailbox gets news, and any use of the socket (a send, a receive, asking its
events) may take that news without telling the caller, so the loop says which sockets it used
(``touch``); a socket it did not touch and whose descriptor stayed quiet has nothing new.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from typing import Any

import zmq

_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_FD = int(zmq.FD)


def _readable(socket: zmq.Socket[Any]) -> bool:
    return bool(int(socket.getsockopt(_EVENTS)) & _POLLIN)


def waiting(socket: zmq.Socket[Any], limit: int) -> Iterator[list[zmq.Frame]]:
    """Up to ``limit`` whole messages ``socket`` holds now, each as its frames (never copied)."""
    for _ in range(limit):
        if not _readable(socket):
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


class SocketWatch:
    """Which of many zmq sockets hold messages, for a loop that reads only with ``waiting`` and says which
    sockets it used (see the module's docstring)."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._sockets: dict[int, zmq.Socket[Any]] = {}  # by notification descriptor
        self._fds: dict[zmq.Socket[Any], int] = {}
        self._touched: set[zmq.Socket[Any]] = set()

    def add(self, socket: zmq.Socket[Any]) -> None:
        fd = int(socket.getsockopt(_FD))
        self._epoll.register(fd, select.EPOLLIN)
        self._sockets[fd], self._fds[socket] = socket, fd
        self._touched.add(socket)  # messages may be there already

    def remove(self, socket: zmq.Socket[Any]) -> None:
        """Before the socket is closed (its descriptor closes with it)."""
        fd = self._fds.pop(socket)
        del self._sockets[fd]
        self._epoll.unregister(fd)
        self._touched.discard(socket)

    def touch(self, socket: zmq.Socket[Any]) -> None:
        """The loop used ``socket`` (sent on it, or took some of its messages): ask its events next time."""
        if socket in self._fds:
            self._touched.add(socket)

    def wait(self, timeout: float) -> list[zmq.Socket[Any]]:
        """The sockets holding a message; if none does yet, the first to get one within ``timeout`` seconds."""
        touched, self._touched = self._touched, set()
        ready = [socket for socket in touched if _readable(socket)]
        for fd, _ in self._epoll.poll(0 if ready else timeout):
            socket = self._sockets[fd]
            if socket not in ready and _readable(socket):
                ready.append(socket)
        return ready

    def close(self) -> None:
        self._epoll.close()
