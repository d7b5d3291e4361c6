"""Who may open another connection to a listening socket: caps per address and in total.

How this works. A ROUTER accepts every TCP connection it is offered, and a
client that holds a thousand idle ones costs nothing to make and starves
everyone else of file descriptors and of the service's attention. So a
listening service counts its live connections and refuses the ones past its
caps during the ZMTP handshake, through ZAP (libzmq's authentication hook, which
it also calls for the NULL mechanism once the socket has a ZAP domain):

- :class:`Admission` is the decision, with no sockets: ``opened(fd, address)``
  and ``closed(fd)`` keep the live connections, ``admit(address)`` says whether
  one more from that address fits ``per_address`` and ``total``.
- :class:`Gate` is its socket side, driven by the service's own loop (no
  thread): it binds the context's ZAP handler, watches the ROUTER with a
  socket monitor (ACCEPTED gives the new connection's descriptor, whose peer
  address it reads at once; DISCONNECTED gives the descriptor back) and
  answers each ZAP request from the counts, reading the monitor first so that
  the connection being checked is already counted. A refused client sees its
  handshake fail; the service logs one line per address per minute with a count.

With CURVE (:mod:`services.wire.curve`) the same ZAP request also carries the
client's public key: the gate admits it only if the service's :class:`Allowlist`
does, and answers with the key (Z85) as the ZMQ ``User-Id``, which every frame
from that connection then carries (the hub binds player records to it; the
Distributor checks it again on every request, so a revoked key is cut off from
connections opened before). ``ZAP_ENFORCE_DOMAIN`` is set on every guarded socket
and the ZAP handler is bound before the socket is: without a handler the
handshake fails closed, never open. A refused key is logged with its address.

Half-open connections (a client that never finishes its greeting) are closed by
libzmq after HANDSHAKE_SECONDS. Only one ZAP handler can exist per zmq context;
a service that binds two sockets in one context shares one Gate between them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import zmq
from zmq.utils import z85

from services.runtime.logs import get_logger
from services.wire.curve import ANY, Allowlist, KeyPair, serve_curve
from services.wire.ids import canonical_address

ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by the ZAP specification (RFC 27)
ZAP_DOMAIN = b"emma"
HANDSHAKE_SECONDS = 10.0  # a connection that has not finished its ZMTP greeting by then is closed
REFUSAL_LOG_EVERY = 60.0  # seconds between log lines about one address's refused connections
_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
_ZAP_BATCH = 256  # requests answered per loop turn, at most

log = get_logger("services")


@dataclass
class Admission:
    """Live connections per address; the caps a new one must fit. Pure: no sockets, no clock."""

    per_address: int
    total: int
    by_fd: dict[int, str] = field(default_factory=dict)
    by_address: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # refusals per address since last reported

    def opened(self, fd: int, address: str) -> None:
        """A connection on descriptor ``fd`` from ``address`` was accepted."""
        self.closed(fd)  # a descriptor number reused before we heard it was closed
        self.by_fd[fd] = address
        self.by_address[address] = self.by_address.get(address, 0) + 1

    def closed(self, fd: int) -> None:
        address = self.by_fd.pop(fd, None)
        if address is None:
            return
        left = self.by_address[address] - 1
        if left:
            self.by_address[address] = left
        else:
            del self.by_address[address]

    def admit(self, address: str) -> bool:
        """Whether a connection from ``address`` (already counted, see :class:`Gate`) may stay."""
        if self.by_address.get(address, 0) <= self.per_address and len(self.by_fd) <= self.total:
            return True
        self.refused[address] = self.refused.get(address, 0) + 1
        return False

    def take_refused(self) -> dict[str, int]:
        taken, self.refused = self.refused, {}
        return taken

    @property
    def live(self) -> int:
        return len(self.by_fd)


class Gate:
    """Applies an :class:`Admission` to the sockets of one zmq context (see the module comment)."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], admission: Admission, service: str,
                 allowlist: Allowlist | None = None) -> None:
        self.admission = admission
        self.service = service
        self.allowlist = allowlist if allowlist is not None else Allowlist(ANY)
        self.refused_keys: dict[tuple[str, bytes], int] = {}  # (address, key) refused since last reported
        self.zap = context.socket(zmq.REP)
        self.zap.linger = 0
        self.zap.bind(ZAP_ENDPOINT)
        self.monitors: list[zmq.Socket[bytes]] = []
        self._next_report = 0.0
        self._next_key_report = 0.0

    def guard(self, router: zmq.Socket[bytes], keys: KeyPair | None = None) -> None:
        """Put ``router`` behind the gate, a CURVE server with ``keys`` if given; call before it binds."""
        if keys is not None:
            serve_curve(router, keys)
        router.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        router.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        router.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_SECONDS * 1000))
        monitor = router.get_monitor_socket(_EVENTS)
        self.monitors.append(monitor)

    def sockets(self) -> Iterator[zmq.Socket[bytes]]:
        """What the loop polls for this gate (then calls :meth:`handle`)."""
        yield self.zap
        yield from self.monitors

    def handle(self, now: float) -> None:
        """Read connection events, then answer pending ZAP requests; bounded work per call."""
        self.refresh(now)
        self._events()
        for _ in range(_ZAP_BATCH):
            try:
                request = self.zap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._events()
            self.zap.send_multipart(self._answer(request))
        if now >= self._next_report:
            refused = self.admission.take_refused()
            if refused:
                self._next_report = now + REFUSAL_LOG_EVERY
                for address, count in sorted(refused.items(), key=lambda item: -item[1])[:10]:
                    log.warning("connections_refused", service=self.service, address=address, count=count,
                                live=self.admission.by_address.get(address, 0), cap=self.admission.per_address,
                                total=self.admission.live, total_cap=self.admission.total)
        if self.refused_keys and now >= self._next_key_report:
            self._next_key_report = now + REFUSAL_LOG_EVERY
            again = [(entry, count) for entry, count in self.refused_keys.items() if count]
            for (address, key), count in again[:10]:
                log.warning("key_refused", service=self.service, address=address, key=key.decode(), count=count,
                            hint="add the key to the allowlist to admit this player")
            self.refused_keys.clear()

    def refresh(self, now: float) -> None:
        """Take a changed allowlist file (the loop also calls this on its own tick: requests check it too)."""
        problem = self.allowlist.refresh(now)
        if problem:
            log.error("allowlist_unreadable", service=self.service, error=problem)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        # version, request id, domain, address, identity, mechanism, credentials...
        if len(request) < 6 or request[0] != b"1.0":
            return [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"malformed ZAP request", b"", b""]
        address = canonical_address(request[3].decode("ascii", "replace"))
        if not self.admission.admit(address):
            return [b"1.0", request[1], b"400", b"too many connections", b"", b""]
        if request[5] != b"CURVE":
            return [b"1.0", request[1], b"200", b"OK", b"", b""]
        if len(request) < 7 or len(request[6]) != 32:
            return [b"1.0", request[1], b"500", b"malformed CURVE credentials", b"", b""]
        key = z85.encode(request[6])
        if not self.allowlist.admits(key):
            self._refused_key(address, key)
            return [b"1.0", request[1], b"400", b"key not on the allowlist", b"", b""]
        return [b"1.0", request[1], b"200", b"OK", key, b""]

    def _refused_key(self, address: str, key: bytes) -> None:
        """Counted for the next report; the first refusal of a key from an address is logged at once."""
        entry = (address, key)
        if entry not in self.refused_keys and len(self.refused_keys) < _ZAP_BATCH:
            log.warning("key_refused", service=self.service, address=address, key=key.decode(), count=1,
                        hint="add the key to the allowlist to admit this player")
            self.refused_keys[entry] = 0
        elif entry in self.refused_keys:
            self.refused_keys[entry] += 1

    def _events(self) -> None:
        for monitor in self.monitors:
            while True:
                try:
                    frames = monitor.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if len(frames) < 2 or len(frames[0]) < 6:
                    continue
                event = int.from_bytes(frames[0][:2], "little")
                fd = int.from_bytes(frames[0][2:6], "little")
                if event == zmq.EVENT_ACCEPTED:
                    self.admission.opened(fd, _peer_of(fd))
                elif event == zmq.EVENT_DISCONNECTED:
                    self.admission.closed(fd)

    def close(self) -> None:
        for monitor in self.monitors:
            monitor.close(linger=0)
        self.zap.close(linger=0)


def source_of(frame: zmq.Frame) -> str:
    """The address a message came from ("" on transports without one, such as inproc)."""
    try:
        return str(frame.get("Peer-Address"))
    except zmq.ZMQError:
        return ""


def key_of(frame: zmq.Frame) -> bytes:
    """The CURVE key (Z85) the message's connection authenticated with (b"" in clear)."""
    try:
        return str(frame.get("User-Id")).encode("ascii")
    except (zmq.ZMQError, UnicodeEncodeError):
        return b""


def _peer_of(fd: int) -> str:
    """The remote address of a connection libzmq just accepted: as ZAP spells it ("" for ipc), "?" if gone."""
    try:
        dup = os.dup(fd)
    except OSError:
        return "?"
    try:
        with socket.socket(fileno=dup) as sock:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return ""
            return canonical_address(str(sock.getpeername()[0]))
    except (OSError, IndexError, ValueError):
        return "?"
