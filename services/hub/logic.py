"""What the hub does with a request: bytes in, bytes out, no sockets, no clock.

How this works: :meth:`HubLogic.handle_frames` takes the frames a ROUTER
received and returns the frames to send back (same envelope shape: with or
without the empty delimiter) or None when no reply is possible.
:meth:`HubLogic.handle` checks size, decodes, rate-limits per client, checks
the version and dispatches on the body kind; each handler validates every
field before it touches the store. A :class:`ProtocolError` becomes an error
reply; any other exception is logged and answered INTERNAL. Unreachable
reports queue pings that the broker collects with :meth:`take_pings` and
answers with :meth:`ping_done`. :meth:`tick` is the periodic housekeeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from google.protobuf.message import DecodeError

from services.hub import validate
from services.hub.model import HubLimits, PeerRecord, RequestKind
from services.hub.ratelimit import RateLimiter, Verdict
from services.hub.reports import Unreachable
from services.hub.store import HubStore
from services.runtime.logs import get_logger
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.pb import hub_pb2

PROTOCOL_VERSION = 1
_SWEEP_EVERY = 10.0
_STOPPED = hub_pb2.STOPPED
_COMPLETED = hub_pb2.COMPLETED
_EVENT_NAMES: dict[int, str] = {value: name.lower() for name, value in hub_pb2.AnnounceEvent.items()}
_EVENT_NAMES[hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED] = "periodic"

_KINDS = {
    "announce": RequestKind.ANNOUNCE,
    "get_peers": RequestKind.GET_PEERS,
    "scrape": RequestKind.SCRAPE,
    "report": RequestKind.REPORT,
    "health": RequestKind.HEALTH,
}

log = get_logger("events")


def _peer_pb(record: PeerRecord) -> hub_pb2.Peer:
    return hub_pb2.Peer(player_id=record.player_id, endpoint=record.endpoint, seed=record.seed)


class HubLogic:
    """The hub's request handling over a :class:`HubStore`; see the module comment.

    ``log_requests`` adds a debug event for every routine request (periodic
    announces, get_peers, scrape, health); it costs more than the request
    itself, so it is off unless asked for. State changes and rejections are
    always logged, and :meth:`tick` logs request counts every ``stats_every``
    seconds.
    """

    def __init__(
        self,
        store: HubStore,
        limits: HubLimits,
        *,
        started_at: float,
        rng: random.Random | None = None,
        log_requests: bool = False,
        stats_every: float = 60.0,
    ) -> None:
        self.store = store
        self.limits = limits
        self.started_at = started_at
        self.rng = rng or random.Random()
        self.log_requests = log_requests
        self.stats_every = stats_every
        self.rate = RateLimiter(limits.rate, limits.burst)
        self.unreachable = Unreachable(
            limits.report_threshold, limits.expiry, limits.max_pending_pings, limits.ping_cooldown
        )
        self.counts: dict[RequestKind, int] = dict.fromkeys(RequestKind, 0)
        self.rejected = 0
        self._next_sweep = started_at
        self._next_stats = started_at + stats_every
        self._handlers: dict[RequestKind, Callable[[hub_pb2.HubRequest, hub_pb2.HubReply, float], None]] = {
            RequestKind.ANNOUNCE: self._announce,
            RequestKind.GET_PEERS: self._get_peers,
            RequestKind.SCRAPE: self._scrape,
            RequestKind.REPORT: self._report,
            RequestKind.HEALTH: self._health,
        }

    def handle_frames(self, frames: list[bytes], now: float) -> list[bytes] | None:
        """Answer one ROUTER message; None when it cannot be answered (logged)."""
        if len(frames) < 2:
            log.warning("hub_dropped", reason="no frame after the identity", frames=len(frames))
            self.counts[RequestKind.INVALID] += 1
            self.rejected += 1
            return None
        identity = frames[0]
        if len(frames) == 2:
            return [identity, self.handle(identity, frames[1], now)]
        if len(frames) == 3 and not frames[1]:
            return [identity, b"", self.handle(identity, frames[2], now)]
        head = [identity, b""] if not frames[1] else [identity]
        body_frames = len(frames) - len(head)
        error = ProtocolError(
            ErrorCode.MALFORMED, f"expected 1 request frame after the envelope, got {body_frames}"
        )
        self.counts[RequestKind.INVALID] += 1
        return [*head, self._reject(identity, 0, RequestKind.INVALID, error)]

    def handle(self, identity: bytes, body: bytes, now: float) -> bytes:
        """Answer one request frame from client ``identity``; always returns a serialized HubReply."""
        verdict = self.rate.check(identity, now)
        if verdict is not Verdict.ALLOW:
            return self._rate_limited(identity, verdict)
        request = hub_pb2.HubRequest()
        kind = RequestKind.INVALID
        try:
            kind = self._decode(request, body, self.limits.max_request_bytes)
            self.counts[kind] += 1
            if request.version != PROTOCOL_VERSION:
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_VERSION,
                    f"hub speaks version {PROTOCOL_VERSION}, request says {request.version}; upgrade the player",
                )
            reply = hub_pb2.HubReply(version=PROTOCOL_VERSION, request_id=request.request_id)
            self._handlers[kind](request, reply, now)
            return reply.SerializeToString()
        except ProtocolError as exc:
            if kind is RequestKind.INVALID:
                self.counts[kind] += 1
            return self._reject(identity, request.request_id, kind, exc)
        except Exception:
            log.exception("hub_internal_error", client=identity.hex(), kind=kind.value)
            error = ProtocolError(ErrorCode.INTERNAL, "the hub failed on this request; it was logged, retry later")
            return self._reject(identity, request.request_id, kind, error)

    @staticmethod
    def _decode(request: hub_pb2.HubRequest, body: bytes, max_bytes: int) -> RequestKind:
        """Parse a request frame into ``request``; return its kind."""
        if not body:
            raise ProtocolError(ErrorCode.MALFORMED, "empty request frame; send a serialized HubRequest")
        if len(body) > max_bytes:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"request is {len(body)} bytes; the limit is {max_bytes}")
        try:
            request.ParseFromString(body)
        except DecodeError:
            raise ProtocolError(ErrorCode.MALFORMED, "request is not a valid HubRequest protobuf") from None
        kind = _KINDS.get(request.WhichOneof("body") or "")
        if kind is None:
            raise ProtocolError(ErrorCode.UNKNOWN_REQUEST, "request has no body this hub understands")
        return kind

    def _rate_limited(self, identity: bytes, verdict: Verdict) -> bytes:
        self.rejected += 1
        if verdict is Verdict.REFUSE_FIRST:
            log.info("hub_rejected", client=identity.hex(), code="RATE_LIMITED", reason="client over its rate")
        error = ProtocolError(ErrorCode.RATE_LIMITED, "too many requests; slow down and retry in a second")
        reply = hub_pb2.HubReply(version=PROTOCOL_VERSION, request_id=0, error=error.to_pb())
        return reply.SerializeToString()

    def _reject(self, identity: bytes, request_id: int, kind: RequestKind, error: ProtocolError) -> bytes:
        self.rejected += 1
        log.info("hub_rejected", client=identity.hex(), kind=kind.value, code=error.code_name, reason=error.message)
        reply = hub_pb2.HubReply(version=PROTOCOL_VERSION, request_id=request_id, error=error.to_pb())
        return reply.SerializeToString()

    def _announce(self, request: hub_pb2.HubRequest, reply: hub_pb2.HubReply, now: float) -> None:
        msg = request.announce
        limits = self.limits
        library_id = validate.library_id(msg.library_id, limits)
        player_id = validate.player_id(msg.player_id)
        event = validate.event(msg.event)
        out = reply.announce
        out.interval = limits.interval
        out.min_interval = limits.min_interval
        if event == _STOPPED:
            gone = self.store.remove(library_id, player_id, now)
            self._fill_counts(out, library_id, now)
            log.info(
                "announce", kind="stopped", library=library_id.hex(), player=player_id.hex(), known=bool(gone)
            )
            return
        store = self.store
        known = store.get(library_id, player_id, now)
        same_endpoint = known is not None and known.endpoint == msg.endpoint
        endpoint = msg.endpoint if same_endpoint else validate.endpoint(msg.endpoint)
        seed = msg.left == 0
        if event == _COMPLETED and not seed:
            raise ProtocolError(ErrorCode.INVALID_ARGUMENT, f"completed announce with left={msg.left}; send left=0")
        if known is None and store.libraries_of(player_id, now) >= limits.max_libraries_per_player:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"player is in {limits.max_libraries_per_player} libraries already; stop one before starting another",
            )
        store.upsert(PeerRecord(library_id, player_id, endpoint, seed, now + limits.expiry), now)
        if event == _COMPLETED and (known is None or not known.seed):
            store.add_completed(library_id)
        want = validate.numwant(msg.numwant, limits)
        peers = store.sample(library_id, want, now, exclude=player_id, seeds=not seed, rng=self.rng)
        out.peers.extend([_peer_pb(record) for record in peers])
        counts = self._fill_counts(out, library_id, now)
        if event != hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED or self.log_requests:
            level = log.debug if event == hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED else log.info
            level(
                "announce", kind=_EVENT_NAMES[event], library=library_id.hex(), player=player_id.hex(),
                endpoint=endpoint, seed=seed, peers=len(peers), seeders=counts[0], leechers=counts[1],
            )

    def _fill_counts(
        self, out: hub_pb2.AnnounceReply | hub_pb2.PeersReply, library_id: bytes, now: float
    ) -> tuple[int, int]:
        counts = self.store.counts(library_id, now)
        out.seeders = counts.seeders
        out.leechers = counts.leechers
        return counts.seeders, counts.leechers

    def _get_peers(self, request: hub_pb2.HubRequest, reply: hub_pb2.HubReply, now: float) -> None:
        msg = request.get_peers
        library_id = validate.library_id(msg.library_id, self.limits)
        player_id = validate.player_id(msg.player_id, optional=True)
        want = validate.numwant(msg.numwant, self.limits)
        me = self.store.get(library_id, player_id, now) if player_id else None
        seeds = me is None or not me.seed
        peers = self.store.sample(library_id, want, now, exclude=player_id, seeds=seeds, rng=self.rng)
        out = reply.peers
        out.peers.extend([_peer_pb(record) for record in peers])
        self._fill_counts(out, library_id, now)
        if self.log_requests:
            log.debug("get_peers", library=library_id.hex(), peers=len(peers))

    def _scrape(self, request: hub_pb2.HubRequest, reply: hub_pb2.HubReply, now: float) -> None:
        library_ids = validate.scrape_ids(list(request.scrape.library_ids), self.limits)
        for library_id in library_ids:
            counts = self.store.counts(library_id, now)
            reply.scrape.libraries.add(
                library_id=library_id, seeders=counts.seeders, leechers=counts.leechers, completed=counts.completed
            )
        if self.log_requests:
            log.debug("scrape", libraries=len(library_ids))

    def _report(self, request: hub_pb2.HubRequest, reply: hub_pb2.HubReply, now: float) -> None:
        msg = request.report
        library_id = validate.library_id(msg.library_id, self.limits)
        reporter = validate.player_id(msg.reporter_id, "reporter_id")
        endpoint = validate.endpoint(msg.endpoint)
        if self.store.get(library_id, reporter, now) is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "reporter is not in this library; announce before reporting")
        reply.report.dropped = False
        if not self.store.find_endpoint(library_id, endpoint, now):
            log.info("report_unknown_endpoint", library=library_id.hex(), endpoint=endpoint)
        elif self.unreachable.report(library_id, endpoint, reporter, now):
            dropped = self.store.remove_endpoint(library_id, endpoint, now)
            reply.report.dropped = bool(dropped)
            log.info(
                "player_dropped", reason="reports", library=library_id.hex(), endpoint=endpoint, players=len(dropped)
            )
        else:
            queued = self.unreachable.want_ping(library_id, endpoint, now)
            log.info("report", library=library_id.hex(), endpoint=endpoint, reporter=reporter.hex(), ping=queued)

    def _health(self, request: hub_pb2.HubRequest, reply: hub_pb2.HubReply, now: float) -> None:
        totals = self.store.totals(now)
        out = reply.health
        out.players = totals.players
        out.libraries = totals.libraries
        out.uptime = max(0.0, now - self.started_at)
        out.store = self.store.name
        for kind, count in self.counts.items():
            out.requests.add(kind=kind.value, count=count)
        out.requests.add(kind="rejected", count=self.rejected)
        if self.log_requests:
            log.debug("health", players=totals.players, libraries=totals.libraries)

    def take_pings(self) -> list[str]:
        """Endpoints the hub wants to check itself (see :mod:`services.hub.pinger`)."""
        return self.unreachable.take_pings()

    def ping_done(self, endpoint: str, reachable: bool, now: float) -> None:
        """Apply a ping result: an unreachable endpoint is dropped from the libraries that reported it."""
        for library_id in self.unreachable.ping_done(endpoint, reachable, now):
            dropped = self.store.remove_endpoint(library_id, endpoint, now)
            log.info("player_dropped", reason="ping", library=library_id.hex(), endpoint=endpoint, players=len(dropped))
        if reachable:
            log.info("ping_ok", endpoint=endpoint)

    def tick(self, now: float) -> None:
        """Periodic housekeeping: store maintenance, and every few seconds forgetting idle state."""
        self.store.maintain(now)
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_EVERY
            self.rate.sweep(now)
            self.unreachable.sweep(now)
        if now >= self._next_stats:
            self._next_stats = now + self.stats_every
            totals = self.store.totals(now)
            log.info(
                "hub_stats", players=totals.players, libraries=totals.libraries, rejected=self.rejected,
                **{f"requests_{kind.value}": count for kind, count in self.counts.items()},
            )
