"""A player's connection to its hubs: synchronous, one DEALER, retries and failover.

How this works (zguide's Lazy Pirate, with failover): each call sends one
HubRequest with a fresh ``request_id`` on a DEALER connected to the current
hub endpoint and polls ``timeout`` seconds for the reply; replies carrying
another id (late answers to an earlier attempt) are discarded. On timeout the
socket is closed with linger 0, which drops anything still queued, the next
hub in :class:`HubOrder` becomes current, a fresh socket is opened and the
request is sent again, up to ``attempts`` sends in all. When the library
lists more than one hub, an attempt also ends at once when the connection to
its hub drops or is refused (the socket monitor says so), and when the hub
answers UNAVAILABLE (it lost its store): a killed hub costs its players a
reconnect, not a timeout. Any other error answer is not retried:
:class:`HubError` carries its code. When every attempt failed,
:class:`HubUnavailable`.

With CURVE (``keys``: each hub's public key, and this player's ``identity``) a
hub that refuses the handshake (this player's key is not on its allowlist, or
the hub's key or mode is not what the library says) is seen on the socket
monitor's handshake-failed events and tried no further in this call; when every
attempt was refused, :class:`HubRefused` says "not authorised by hub X" (or
what else went wrong), not a timeout.

The order of the hubs (:class:`HubOrder`): shuffled once, so that players
spread over a fleet's hubs; the hub that answered moves to the front and
stays there; a hub that failed FAILURES_TO_SKIP times in a row is skipped for
SKIP_SECONDS (unless every hub is).

Use one client from one thread; close it with :meth:`HubClient.close` (or a
``with`` block).
"""

from __future__ import annotations

import collections
import itertools
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType

import zmq
from google.protobuf.message import DecodeError

from services.hub.client_types import (
    AnnounceEvent,
    AnnounceResult,
    HubClientError,
    HubError,
    HubHealth,
    HubRefused,
    HubUnavailable,
    LibraryStats,
    PeerInfo,
    PeersResult,
    Reachability,
)
from services.runtime.logs import get_logger
from services.wire.curve import CurveKeyError, KeyPair, check_key, connect_curve
from services.wire.pb import common_pb2, hub_pb2
from services.wire.versions import HUB

__all__ = [
    "AnnounceEvent",
    "AnnounceResult",
    "HubClient",
    "HubClientError",
    "HubError",
    "HubHealth",
    "HubRefused",
    "HubUnavailable",
    "LibraryStats",
    "PeerInfo",
    "PeersResult",
]

FAILURES_TO_SKIP = 3
SKIP_SECONDS = 60.0
FAILOVER_TIMEOUT = 1.0  # seconds per attempt at most when there is another hub to try
_DROPPED = zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CLOSED
_REFUSED = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
log = get_logger("services")


class HubOrder:
    """Which hub to ask next: no sockets, no clock (callers pass ``now``); see the module comment."""

    def __init__(self, endpoints: Sequence[str], rng: random.Random | None = None) -> None:
        self.endpoints = list(dict.fromkeys(endpoints))
        if rng is not None:
            rng.shuffle(self.endpoints)
        self._failures: dict[str, int] = {}
        self._skip_until: dict[str, float] = {}

    def next(self, now: float, after: str | None = None) -> str:
        """The hub to ask: the first one not skipped (after ``after``, when one just failed)."""
        order = self.endpoints
        if after is not None and after in order:
            start = order.index(after) + 1
            order = order[start:] + order[:start]
        for endpoint in order:
            if self._skip_until.get(endpoint, 0.0) <= now:
                return endpoint
        return order[0]  # every hub is skipped: ask them anyway, in order

    def answered(self, endpoint: str) -> None:
        self._failures.pop(endpoint, None)
        self._skip_until.pop(endpoint, None)
        if self.endpoints[0] != endpoint:
            self.endpoints.remove(endpoint)
            self.endpoints.insert(0, endpoint)

    def failed(self, endpoint: str, now: float) -> None:
        failures = self._failures.get(endpoint, 0) + 1
        if failures >= FAILURES_TO_SKIP:
            self._skip_until[endpoint] = now + SKIP_SECONDS
            failures = 0
        self._failures[endpoint] = failures

    def skipped(self, now: float) -> list[str]:
        return [ep for ep in self.endpoints if self._skip_until.get(ep, 0.0) > now]


def _peers(items: Iterable[hub_pb2.Peer]) -> tuple[PeerInfo, ...]:
    """The peers of a reply; one whose key is not a CURVE key is left out (nobody could connect to it)."""
    out = []
    for p in items:
        try:
            key = check_key(p.public_key, "peer key") if p.public_key else b""
        except CurveKeyError:
            continue
        out.append(PeerInfo(p.player_id, p.endpoint, p.seed, key))
    return tuple(out)


class HubClient:
    """Talks to one hub at a time out of ``endpoints``, failing over to the next (see the module comment).

    ``timeout`` is seconds per attempt (at most FAILOVER_TIMEOUT when there are several hubs: a hub
    that went silent should cost its players little more); ``attempts`` is sends per call in all,
    across endpoints (default: 3, or one per endpoint if there are more). A
    call therefore gives up after about ``timeout * attempts`` seconds. The
    hubs are shuffled unless ``shuffle`` is False (then they are asked in the
    order given). Pass ``context`` to share one; otherwise the client makes
    its own and ends it on :meth:`close`.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        timeout: float = 2.0,
        attempts: int | None = None,
        shuffle: bool = True,
        keys: Mapping[str, bytes] | None = None,
        identity: KeyPair | None = None,
    ) -> None:
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not self.endpoints:
            raise ValueError("HubClient needs at least one hub endpoint")
        self.order = HubOrder(self.endpoints, random.Random() if shuffle else None)
        self._fast_failover = len(self.order.endpoints) > 1
        self.keys = {endpoint: key for endpoint, key in (keys or {}).items() if key}  # hub -> CURVE key; else clear
        self.identity = identity if identity is not None or not self.keys else KeyPair.generate()
        self._watch = _DROPPED if self._fast_failover else 0
        self._watch |= _REFUSED
        self.timeout = min(timeout, FAILOVER_TIMEOUT) if self._fast_failover else timeout
        self.attempts = attempts if attempts is not None else max(3, len(self.endpoints))
        self._own_context = context is None
        self._context: zmq.Context[zmq.Socket[bytes]] = context if context is not None else zmq.Context()
        self._current = self.order.next(time.monotonic())
        self._socket: zmq.Socket[bytes] | None = None
        self._monitor: zmq.Socket[bytes] | None = None
        self._ids = itertools.count(random.randrange(1, 1 << 31))
        self._closed = False
        self.timeouts = 0  # attempts that failed (no answer in time, connection lost, hub unavailable), in all
        self.failures: collections.deque[str] = collections.deque(maxlen=16)  # why recent attempts failed

    @property
    def endpoint(self) -> str:
        """The hub endpoint the next request goes to first."""
        return self._current

    def announce(
        self,
        library_id: bytes,
        player_id: bytes,
        endpoint: str,
        event: AnnounceEvent = AnnounceEvent.PERIODIC,
        *,
        uploaded: int = 0,
        downloaded: int = 0,
        left: int = 0,
        numwant: int = 50,
        plain: bool = False,
    ) -> AnnounceResult:
        """Tell the hub this player serves ``library_id`` at ``endpoint``; get peers back (left=0 = seed)."""
        body = hub_pb2.Announce(
            library_id=library_id, player_id=player_id, endpoint=endpoint,
            event=hub_pb2.AnnounceEvent.ValueType(event.value),
            uploaded=uploaded, downloaded=downloaded, left=left, numwant=numwant, plain=plain,
        )
        return _announced(self._call(hub_pb2.HubRequest(announce=body), "announce").announce)

    def announce_batch(self, announces: Sequence[hub_pb2.Announce]) -> list[AnnounceResult | HubError]:
        """Several announces in one request (a hub of version 2); each one's result, or the error the hub
        answered it with, in order. A hub too old to know batches raises HubError UNKNOWN_REQUEST."""
        reply = self._call(hub_pb2.HubRequest(announce_batch=hub_pb2.AnnounceBatch(announces=announces)),
                           "announce_batch").announce_batch
        if len(reply.replies) != len(announces):
            raise HubClientError(f"hub answered {len(reply.replies)} of {len(announces)} announces; is it an Emma hub?")
        return [_announced(item.announce) if item.WhichOneof("body") == "announce"
                else HubError(item.error.code, item.error.message) for item in reply.replies]

    def get_peers(self, library_id: bytes, player_id: bytes = b"", numwant: int = 50) -> PeersResult:
        """Random live players of a library, never ``player_id`` itself."""
        body = hub_pb2.GetPeers(library_id=library_id, player_id=player_id, numwant=numwant)
        reply = self._call(hub_pb2.HubRequest(get_peers=body), "peers").peers
        return PeersResult(_peers(reply.peers), reply.seeders, reply.leechers)

    def scrape(self, library_ids: Iterable[bytes]) -> list[LibraryStats]:
        """Seeders, leechers and completed downloads of each library, in the order asked."""
        body = hub_pb2.Scrape(library_ids=list(library_ids))
        reply = self._call(hub_pb2.HubRequest(scrape=body), "scrape").scrape
        return [LibraryStats(s.library_id, s.seeders, s.leechers, s.completed) for s in reply.libraries]

    def report_unreachable(self, library_id: bytes, reporter_id: bytes, endpoint: str) -> bool:
        """Say this player could not reach ``endpoint``; True when the hub dropped that player."""
        body = hub_pb2.ReportUnreachable(library_id=library_id, reporter_id=reporter_id, endpoint=endpoint)
        return self._call(hub_pb2.HubRequest(report=body), "report").report.dropped

    def health(self) -> HubHealth:
        """The hub's counters: live players and libraries, requests per kind, uptime, store."""
        reply = self._call(hub_pb2.HubRequest(health=hub_pb2.Health()), "health").health
        requests = {item.kind: item.count for item in reply.requests}
        return HubHealth(reply.players, reply.libraries, requests, reply.uptime, reply.store)

    def close(self) -> None:
        """Close the socket (and the context, when the client made its own). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._drop_socket()
        if self._own_context:
            self._context.term()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, request: hub_pb2.HubRequest, expect: str) -> hub_pb2.HubReply:
        if self._closed:
            raise HubClientError("this HubClient is closed; make a new one")
        request.version = HUB.current
        tried: list[str] = []
        refusals: list[str] = []
        for _ in range(self.attempts):
            request.request_id = next(self._ids)
            reply, why = self._attempt(request)
            if reply is not None:
                if self._fast_failover and reply.WhichOneof("body") == "error" and \
                        reply.error.code == common_pb2.UNAVAILABLE:
                    why = "unavailable"
                else:
                    self.order.answered(self._current)
                    return self._check(reply, expect)
            tried.append(self._current)
            if why.startswith(_NOT_AUTHORISED) or why.startswith(_HANDSHAKE):
                refusals.append(why)
            self.timeouts += 1
            self.failures.append(why)  # "timeout", "connection lost", "unavailable" or "queue full"
            log.warning("hub_failed", endpoint=self._current, why=why, timeout=self.timeout)
            self._drop_socket()
            failed, now = self._current, time.monotonic()
            self.order.failed(failed, now)
            self._current = self.order.next(now, after=failed)
        if refusals:
            raise HubRefused(refusals)
        raise HubUnavailable(tried, self.timeout)

    def _attempt(self, request: hub_pb2.HubRequest) -> tuple[hub_pb2.HubReply | None, str]:
        """Send once and wait for the answer: (reply, "") or (None, why not)."""
        sock = self._open()
        if self._monitor is not None:
            self._events()  # events from before this request (a drop libzmq has since reconnected from) are past
        try:
            sock.send(request.SerializeToString(), zmq.NOBLOCK)
        except zmq.Again:
            return None, "queue full"
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            ready = dict(poller.poll(max(1, int(left * 1000))))
            if not ready:
                break
            if self._monitor is not None and self._monitor in ready:
                dropped, refused = self._events()
                if refused:
                    return None, self._refusal(refused)
                if dropped:
                    return None, "connection lost"
            if sock not in ready:
                continue
            reply = hub_pb2.HubReply()
            try:
                reply.ParseFromString(sock.recv_multipart(zmq.NOBLOCK)[-1])
            except (DecodeError, zmq.Again):
                continue
            if reply.request_id == request.request_id or (reply.request_id == 0 and reply.HasField("error")):
                return reply, ""
        return None, "timeout"

    def _events(self) -> tuple[bool, int]:
        """Whether the monitor reported the connection dropped, and the handshake failure it reported (0: none)."""
        assert self._monitor is not None
        dropped, refused = False, 0
        while True:
            try:
                frames = self._monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return dropped, refused
            event = int.from_bytes(frames[0][:2], "little") if frames and len(frames[0]) >= 2 else 0
            dropped = dropped or bool(event & _DROPPED)
            refused = refused or (event & _REFUSED)

    def _refusal(self, event: int) -> str:
        """What a handshake failure with the current hub means, for the user."""
        endpoint = self._current
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return (f"{_NOT_AUTHORISED} {endpoint}: this player's key is not on its allowlist; ask its operator to "
                    "add the key `emma keys show` prints")
        if endpoint in self.keys:
            return (f"{_HANDSHAKE} {endpoint} failed: it does not hold the key the library names, or runs in clear; "
                    "get the library again from its publisher")
        return (f"{_HANDSHAKE} {endpoint} failed: the library names no key for this hub and the hub encrypts; "
                "re-share it with `emma share` after `emma settings set hub.key KEY` (the key `emma hub` prints)")

    @staticmethod
    def _check(reply: hub_pb2.HubReply, expect: str) -> hub_pb2.HubReply:
        body = reply.WhichOneof("body")
        if body == "error":
            raise HubError(reply.error.code, reply.error.message)
        if body != expect:
            raise HubClientError(f"hub answered {body or 'nothing'} to a {expect} request; is it an Emma hub?")
        return reply

    def _open(self) -> zmq.Socket[bytes]:
        if self._socket is None:
            sock = self._context.socket(zmq.DEALER)
            sock.linger = 0
            if self.identity is not None:
                connect_curve(sock, self.identity, self.keys.get(self.endpoint, b""))
            self._monitor = sock.get_monitor_socket(self._watch)
            sock.connect(self.endpoint)
            self._socket = sock
        return self._socket

    def _drop_socket(self) -> None:
        if self._socket is not None:
            if self._monitor is not None:
                self._socket.disable_monitor()
                self._monitor.close(linger=0)
                self._monitor = None
            self._socket.close(linger=0)
            self._socket = None


_NOT_AUTHORISED = "not authorised by hub"
_HANDSHAKE = "the handshake with hub"


def _announced(reply: hub_pb2.AnnounceReply) -> AnnounceResult:
    return AnnounceResult(_peers(reply.peers), reply.seeders, reply.leechers, reply.interval, reply.min_interval,
                          reply.endpoint, _reachability(reply.reachable))


def _reachability(value: int) -> Reachability:
    """A hub of a newer version may send values this player does not know: those read as unknown."""
    try:
        return Reachability(value)
    except ValueError:
        return Reachability.UNKNOWN
