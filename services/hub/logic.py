"""What the hub does with a request: bytes in, bytes out, no sockets, no clock.

How this works: :meth:`HubLogic.handle_batch` takes the messages a ROUTER
received together and returns, for each, the frames to send back (same
envelope shape: with or without the empty delimiter) or None when no reply is
possible; the periodic announces among them refresh the store together, a
part of PART requests at a time, pipelined (``refresh_start``: one round trip
to a remote store per part, overlapping the hub's own work on the others).
:meth:`HubLogic.handle` rate-limits per client, checks size, decodes, checks
the version and dispatches on the body kind to :mod:`services.hub.handlers`,
which validate every field before touching the store. A :class:`ProtocolError` becomes an error
reply; a store out of reach (a Redis that is down) is answered UNAVAILABLE, which sends the
client to its next hub, and logged once per outage; any other exception is logged and answered
INTERNAL. A request that came over CURVE carries the client's public key (the
ROUTER frame's ``User-Id``, see :mod:`services.wire.admission`): a key off the
allowlist (revoked since it connected) is answered NOT_AUTHORISED, and its
announce also removes its record; a request naming a player id other than the
one its key derives (:func:`services.wire.curve.player_id_of`) is FORBIDDEN:
each player record is bound to the key that announced it. Hubs sharing a
store also share, through it, each address's request count: every
SHARED_RATE_EVERY seconds this hub adds its own and learns the total, and refuses an address
whose total over all hubs passed its limit for the rest of that second. Unreachable
reports queue pings that the broker collects with :meth:`take_pings` and
answers with :meth:`ping_done`. :meth:`tick` is the periodic housekeeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Container, Sequence
from functools import partial
from typing import Any, NamedTuple

from google.protobuf.message import DecodeError

from services.hub.handlers import PendingAnnounce, RequestHandlers, reply_head
from services.hub.metrics import PUBLISH_EVERY, HubSnapshot
from services.hub.model import HubLimits, RequestKind
from services.hub.ratelimit import RateLimiter
from services.hub.rejections import Rejections
from services.hub.reports import Unreachable
from services.hub.store import HubStore
from services.hub.store_errors import StoreUnavailable
from services.runtime.latency import Latency
from services.runtime.logs import get_logger
from services.wire.curve import Allowlist, player_id_of
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.pb import hub_pb2
from services.wire.versions import HUB

_SWEEP_EVERY = 10.0
SHARED_RATE_EVERY = 0.25
PART = 16  # requests of a batch whose refreshes are started together (see _answer_all)
STORE_RETRY = 1.0  # after the store failed, requests are answered UNAVAILABLE without trying it for this long

_INVALID = RequestKind.INVALID.value
_UNKNOWN = "unknown"  # the kind of a request refused before it was read
_OK = "OK"
_ANNOUNCE = RequestKind.ANNOUNCE.value
_BATCH = RequestKind.ANNOUNCE_BATCH.value

log = get_logger("events")


class _Admitted(NamedTuple):
    """A request past the rate limits and decoded: who sent it, from where, and what it asks."""

    identity: bytes
    source: str
    request: hub_pb2.HubRequest
    kind: str
    key: bytes  # the client's CURVE public key (Z85); empty in clear


# The player id each kind of request speaks for, checked against its key.
_CLAIMS: dict[str, Callable[[hub_pb2.HubRequest], bytes]] = {
    RequestKind.ANNOUNCE.value: lambda request: request.announce.player_id,
    RequestKind.GET_PEERS.value: lambda request: request.get_peers.player_id,
    RequestKind.REPORT.value: lambda request: request.report.reporter_id,
}


def _raise(exc: Exception) -> Any:
    raise exc


def _nothing() -> None:
    """Finishes a part of a batch with no announce waiting."""


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
        local_address: Callable[[str], str] | None = None,
        keys: Allowlist | None = None,
    ) -> None:
        self.store = store
        self.keys = keys  # who may still speak (the broker's gate refreshes it); None: every key
        self.limits = limits
        self.started_at = started_at
        self.rng = rng or random.Random()
        self.log_requests = log_requests
        self.stats_every = stats_every
        self.rate = RateLimiter(limits.rate, limits.burst)
        # An address's own bucket: new identities cost nothing, a new address does.
        self.address_rate = RateLimiter(limits.rate * limits.address_factor, limits.burst * limits.address_factor)
        self.rejections = Rejections()
        self.unreachable = Unreachable(limits.expiry, limits.max_pending_pings, limits.ping_cooldown,
                                       shared=store.shared)
        self.store_down = False  # the store is out of reach: logged once, cleared by the next success
        self._store_retry_at = 0.0
        self.unavailable = 0  # requests answered UNAVAILABLE
        # Shared per-address counting (hubs on one store): this hub's counts since the last exchange,
        # and addresses over the shared limit until the end of their one-second window.
        self._address_hits: dict[str, int] = {}
        self._over: dict[str, float] = {}
        self._next_shared_rate = started_at
        # Every request is counted once here, by (kind, result code): health, stats and metrics all read it.
        # Kinds are RequestKind values, the names of HubRequest's body fields (no enum hashing per request);
        # a request refused before its kind was read is of kind "unknown".
        self.results: dict[tuple[str, str], int] = {}
        self.internal_errors = 0
        self.latency = Latency()  # fed by the broker, which times each request
        self.snapshot: HubSnapshot | None = None  # the latest, for the metrics; kept fresh once published
        self._next_publish = started_at
        self._next_sweep = started_at
        self._next_stats = started_at + stats_every
        self.handlers = RequestHandlers(store, limits, self.unreachable, self.rng, log_requests, local_address)
        # Announces are answered in two steps around the batch's store refresh (see _answer_part); the
        # other kinds in one call.
        self._dispatch: dict[str, Callable[[hub_pb2.HubRequest, float, str], bytes]] = {
            RequestKind.GET_PEERS.value: self.handlers.get_peers,
            RequestKind.SCRAPE.value: self.handlers.scrape,
            RequestKind.REPORT.value: self.handlers.report,
            RequestKind.HEALTH.value: self._health,
        }
        self._kinds = frozenset({_ANNOUNCE, _BATCH, *self._dispatch})

    @property
    def counts(self) -> dict[RequestKind, int]:
        """Requests received per kind (``INVALID``: kind unknown or undecodable)."""
        return {RequestKind(name): count for name, count in self._per_kind().items()}

    def _per_kind(self) -> dict[str, int]:
        per_kind = {kind.value: 0 for kind in RequestKind}
        for (kind, _), count in self.results.items():
            if kind in per_kind:
                per_kind[kind] += count
        return per_kind

    @property
    def rejected(self) -> int:
        """Requests answered with an error, or not answered at all."""
        return sum(count for (_, code), count in self.results.items() if code != _OK)

    @property
    def rate_limited(self) -> int:
        """Requests refused before decoding (also counted in ``rejected``)."""
        return self.results.get((_UNKNOWN, "RATE_LIMITED"), 0)

    def handle_frames(self, frames: list[bytes], now: float, source: str = "", key: bytes = b"") -> list[bytes] | None:
        """Answer one ROUTER message from address ``source`` ("" unknown); None when it cannot be answered."""
        return self.handle_batch([(frames, source)], now, [key])[0]

    def handle(self, identity: bytes, body: bytes, now: float, source: str = "", key: bytes = b"") -> bytes:
        """Answer one request frame from client ``identity`` at address ``source``, authenticated with CURVE key
        ``key`` (empty: in clear); always a serialized HubReply."""
        return self._answer_all([(identity, body, source, key)], now)[0]

    def handle_batch(self, messages: Sequence[tuple[list[bytes], str]], now: float,
                     keys: Sequence[bytes] | None = None) -> list[list[bytes] | None]:
        """Answer ROUTER messages (frames, source address) read together, in order, each with its client's
        CURVE key in ``keys`` (None: all in clear); None for one that cannot be answered. Their periodic
        announces refresh the store together (see :meth:`_answer_all`)."""
        replies: list[list[bytes] | None] = [None] * len(messages)
        requests: list[tuple[bytes, bytes, str, bytes]] = []
        heads: list[tuple[int, list[bytes]]] = []
        for n, (frames, source) in enumerate(messages):
            if len(frames) < 2:
                self._result(_INVALID, "MALFORMED")
                self.rejections.refused(source or frames[0].hex(), "MALFORMED", "no frame after the identity", now)
                continue
            identity = frames[0]
            if len(frames) == 2 or (len(frames) == 3 and not frames[1]):
                heads.append((n, frames[:-1]))
                requests.append((identity, frames[-1], source, keys[n] if keys is not None else b""))
                continue
            head = [identity, b""] if not frames[1] else [identity]
            error = ProtocolError(
                ErrorCode.MALFORMED, f"expected 1 request frame after the envelope, got {len(frames) - len(head)}"
            )
            replies[n] = [*head, self._reject(identity, source, 0, _INVALID, error, now)]
        for (n, head), reply in zip(heads, self._answer_all(requests, now), strict=True):
            replies[n] = [*head, reply]
        return replies

    def _answer_all(self, requests: Sequence[tuple[bytes, bytes, str, bytes]], now: float) -> list[bytes]:
        """Serialized HubReplies to (identity, body, source, key) requests, in order.

        The batch is answered in parts of PART requests, as a pipeline: a part's refreshes are started, then
        the part before it is finished. A remote store thus runs one part's refreshes while this hub prepares
        the next part and finishes the previous one."""
        replies: list[bytes] = [b""] * len(requests)
        earlier = _nothing
        for start in range(0, len(requests), PART):
            finish = self._answer_part(requests, range(start, min(start + PART, len(requests))), replies, now)
            earlier()
            earlier = finish
        earlier()
        return replies

    def _answer_part(self, requests: Sequence[tuple[bytes, bytes, str, bytes]], part: range, replies: list[bytes],
                     now: float) -> Callable[[], None]:
        """Answer ``requests[part]`` into ``replies``, all but their periodic announces, whose refresh is
        started; what this returns finishes those. An announce_batch is answered announce by announce, as
        if each had come alone (its slot in ``items``), then as one reply."""
        waiting: list[tuple[list[bytes], int, _Admitted, PendingAnnounce]] = []  # (where, index, ...)
        batches: list[tuple[int, _Admitted, list[bytes]]] = []
        for n in part:
            identity, body, source, key = requests[n]
            admitted = self._admit(identity, body, now, source, key)
            if isinstance(admitted, bytes):
                replies[n] = admitted
                continue
            if admitted.kind == _ANNOUNCE:
                self._begin(admitted, now, replies, n, waiting)
            elif admitted.kind == _BATCH:
                items = [b""] * len(admitted.request.announce_batch.announces)
                batches.append((n, admitted, items))
                for index, announce in enumerate(admitted.request.announce_batch.announces):
                    single = hub_pb2.HubRequest(version=admitted.request.version, request_id=index, announce=announce)
                    self._begin(admitted._replace(request=single, kind=_ANNOUNCE), now, items, index, waiting)
            else:
                replies[n] = self._answer(admitted, now, partial(self._dispatch[admitted.kind], admitted.request,
                                                                 now, admitted.source))
        if not waiting:
            self._batch_replies(batches, replies)
            return _nothing
        try:
            results = self.store.refresh_start([(p.record, p.want, not p.record.seed) for *_, p in waiting], now,
                                               self.rng)
        except Exception as exc:  # answered at finish, request by request, as any failure of the request
            results = partial(_raise, exc)

        def finish() -> None:
            try:
                refreshed: list[Any] | Exception = results()
            except Exception as exc:
                refreshed = exc
            for position, (where, index, admitted, pending) in enumerate(waiting):
                if isinstance(refreshed, Exception):
                    where[index] = self._answer(admitted, now, partial(_raise, refreshed))
                else:
                    where[index] = self._answer(admitted, now, partial(self.handlers.announce_end, pending,
                                                                       refreshed[position], now, admitted.source))
            self._batch_replies(batches, replies)

        return finish

    def _begin(self, admitted: _Admitted, now: float, where: list[bytes], index: int,
               waiting: list[tuple[list[bytes], int, _Admitted, PendingAnnounce]]) -> None:
        """Begin an announce: its reply into ``where[index]``, or it waits for the part's store refresh."""
        begun = self._guarded(admitted, now, partial(self.handlers.announce_begin, admitted.request, now,
                                                     admitted.source, admitted.key))
        if isinstance(begun, PendingAnnounce):
            waiting.append((where, index, admitted, begun))
        else:
            where[index] = begun

    def _batch_replies(self, batches: list[tuple[int, _Admitted, list[bytes]]], replies: list[bytes]) -> None:
        """Each announce_batch's reply: the replies of its announces, in order."""
        for n, admitted, items in batches:
            head = reply_head(admitted.request)
            for item in items:
                head.announce_batch.replies.add().MergeFromString(item)
            self._result(_BATCH, _OK)
            replies[n] = head.SerializeToString()

    def _admit(self, identity: bytes, body: bytes, now: float, source: str, key: bytes) -> bytes | _Admitted:
        """A refusal (rate, size, decoding, version), or the decoded request to answer."""
        if not (self.rate.check(identity, now) and (not source or self.address_rate.check(source.encode(), now))):
            return self._rate_limited(identity, source, now)
        if source and self.store.shared is not None:
            if self._over and self._over.get(source, 0.0) > now:
                return self._rate_limited(identity, source, now)
            self._address_hits[source] = self._address_hits.get(source, 0) + 1
        request = hub_pb2.HubRequest()
        kind = _INVALID
        try:
            kind = self._decode(request, body, self.limits.max_request_bytes, self._kinds)
            HUB.check(request.version)
            if kind == _BATCH and not self._batch_admitted(request, identity, source, now):
                return self._rate_limited(identity, source, now)
            if key:
                self._check_key(request, kind, key, now)
        except ProtocolError as exc:
            return self._reject(identity, source, request.request_id, kind, exc, now)
        return _Admitted(identity, source, request, kind, key)

    def _batch_admitted(self, request: hub_pb2.HubRequest, identity: bytes, source: str, now: float) -> bool:
        """Check a batch's size and spend what it costs the client beyond the token its message spent: one per
        announce, as if each had come alone (the hub's work per announce is much the same either way); False
        when the client has not that many left."""
        count = len(request.announce_batch.announces)
        if not 0 < count <= self.limits.max_batch:
            raise ProtocolError(ErrorCode.TOO_LARGE if count else ErrorCode.INVALID_ARGUMENT,
                                f"an announce batch holds 1 to {self.limits.max_batch} announces, not {count}")
        more = count - 1
        if not more:
            return True
        return self.rate.check(identity, now, more) and (
            not source or self.address_rate.check(source.encode(), now, more))

    def _check_key(self, request: hub_pb2.HubRequest, kind: str, key: bytes, now: float) -> None:
        """Refuse a key off the allowlist (its announce also ends its record), and an id that is not the key's."""
        if self.keys is not None and not self.keys.admits(key):
            if kind == _ANNOUNCE:
                self._forget_revoked(request.announce, key, now)
            for announce in request.announce_batch.announces if kind == _BATCH else ():
                self._forget_revoked(announce, key, now)
            raise ProtocolError(ErrorCode.NOT_AUTHORISED, "this player's key is not on the hub's allowlist (any "
                                "more); ask the hub's operator to add it (`emma keys show` prints it)")
        claims = [_CLAIMS[kind](request)] if kind in _CLAIMS else []
        if kind == _BATCH:
            claims = [announce.player_id for announce in request.announce_batch.announces]
        own = player_id_of(key) if claims else b""
        if any(claimed and claimed != own for claimed in claims):
            raise ProtocolError(ErrorCode.FORBIDDEN, "the player id in this request is not the one of the key "
                                "this connection authenticated with; a player speaks only for itself")

    def _forget_revoked(self, announce: hub_pb2.Announce, key: bytes, now: float) -> None:
        """A revoked player's next announce removes it: the hub stops handing it out within one interval."""
        if len(announce.library_id) != 32 or announce.player_id != player_id_of(key):
            return
        try:
            if self.store.remove(announce.library_id, announce.player_id, now) is not None:
                log.info("player_dropped", reason="key revoked", library=announce.library_id.hex(),
                         player=announce.player_id.hex(), key=key.decode())
        except StoreUnavailable as exc:
            self._store_lost(exc, now)

    def _answer(self, admitted: _Admitted, now: float, action: Callable[[], bytes]) -> bytes:
        reply = self._guarded(admitted, now, action)
        assert isinstance(reply, bytes)
        return reply

    def _guarded(self, admitted: _Admitted, now: float,
                 action: Callable[[], bytes | PendingAnnounce]) -> bytes | PendingAnnounce:
        """Run ``action`` for a request: its reply (counted), a pending announce, or the error reply its failure
        makes (a store out of reach: UNAVAILABLE; anything unexpected: logged, INTERNAL)."""
        identity, source, request, kind, _ = admitted
        try:
            if self.store_down and now < self._store_retry_at:
                raise StoreUnavailable("the store failed less than a second ago")
            reply = action()
            if isinstance(reply, bytes):
                self._result(kind, _OK)
                if self.store_down:
                    self._store_back()
            return reply
        except ProtocolError as exc:
            return self._reject(identity, source, request.request_id, kind, exc, now)
        except StoreUnavailable as exc:
            self._store_lost(exc, now)
            self.unavailable += 1
            error = ProtocolError(ErrorCode.UNAVAILABLE, "this hub cannot reach its store; try another hub")
            return self._reject(identity, source, request.request_id, kind, error, now)
        except Exception:
            self.internal_errors += 1
            log.exception("hub_internal_error", client=identity.hex(), kind=kind)
            error = ProtocolError(ErrorCode.INTERNAL, "the hub failed on this request; it was logged, retry later")
            return self._reject(identity, source, request.request_id, kind, error, now)

    @staticmethod
    def _decode(request: hub_pb2.HubRequest, body: bytes, max_bytes: int, known: Container[str]) -> str:
        """Parse a request frame into ``request``; return its kind (the body field's name)."""
        if not body:
            raise ProtocolError(ErrorCode.MALFORMED, "empty request frame; send a serialized HubRequest")
        if len(body) > max_bytes:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"request is {len(body)} bytes; the limit is {max_bytes}")
        try:
            request.ParseFromString(body)
        except DecodeError:
            raise ProtocolError(ErrorCode.MALFORMED, "request is not a valid HubRequest protobuf") from None
        kind = request.WhichOneof("body")
        if kind is None or kind not in known:
            raise ProtocolError(ErrorCode.UNKNOWN_REQUEST, "request has no body this hub understands")
        return kind

    def _rate_limited(self, identity: bytes, source: str, now: float) -> bytes:
        self._result(_UNKNOWN, "RATE_LIMITED")
        self.rejections.refused(source or identity.hex(), "RATE_LIMITED", "client over its rate", now)
        error = ProtocolError(ErrorCode.RATE_LIMITED, "too many requests; slow down and retry in a second")
        reply = hub_pb2.HubReply(version=HUB.current, request_id=0, error=error.to_pb())
        return reply.SerializeToString()

    def _reject(
        self, identity: bytes, source: str, request_id: int, kind: str, error: ProtocolError, now: float
    ) -> bytes:
        self._result(kind, error.code_name)
        self.rejections.refused(source or identity.hex(), error.code_name, f"{kind}: {error.message}", now)
        reply = hub_pb2.HubReply(version=HUB.current, request_id=request_id, error=error.to_pb())
        return reply.SerializeToString()

    def _health(self, request: hub_pb2.HubRequest, now: float, source: str = "") -> bytes:
        totals = self.store.totals(now)
        head = reply_head(request)
        out = head.health
        out.players = totals.players
        out.libraries = totals.libraries
        out.uptime = max(0.0, now - self.started_at)
        out.store = self.store.name
        per_kind = self._per_kind()
        per_kind[RequestKind.HEALTH.value] += 1  # this request too: it is counted once it is answered
        for kind, count in per_kind.items():
            out.requests.add(kind=kind, count=count)
        out.requests.add(kind="rejected", count=self.rejected)
        out.requests.add(kind="rate_limited", count=self.rate_limited)
        if self.log_requests:
            log.debug("health", players=totals.players, libraries=totals.libraries)
        return head.SerializeToString()

    def take_pings(self) -> list[str]:
        """Endpoints the hub wants to check itself (see :mod:`services.hub.pinger`)."""
        return self.unreachable.take_pings()

    def ping_done(self, endpoint: str, reachable: bool, now: float) -> None:
        """Apply a ping result: an unreachable endpoint is dropped from the libraries that reported it.

        With the store out of reach the result is lost: the reports are made again, so is the ping."""
        try:
            self.handlers.ping_done(endpoint, reachable, now)
        except StoreUnavailable as exc:
            self._store_lost(exc, now)

    def _store_lost(self, exc: StoreUnavailable, now: float) -> None:
        self._store_retry_at = max(self._store_retry_at, now + STORE_RETRY)
        if not self.store_down:
            self.store_down = True
            log.error("store_unavailable", store=self.store.name, error=str(exc),
                      hint="players fail over to the library's other hubs; this hub recovers by itself")

    def _store_back(self) -> None:
        self.store_down = False
        log.info("store_available", store=self.store.name)

    def _share_rates(self, now: float) -> None:
        """Exchange per-address counts with the other hubs; remember who is over the limit this second."""
        shared = self.store.shared
        if shared is None or now < self._next_shared_rate:
            return
        self._next_shared_rate = now + SHARED_RATE_EVERY
        hits, self._address_hits = self._address_hits, {}
        if self._over:
            self._over = {address: until for address, until in self._over.items() if until > now}
        window = int(now)
        limit = self.limits.rate * self.limits.address_factor  # sustained rate; each hub's own bucket takes bursts
        if not hits or not self.limits.rate:
            return
        for address, total in shared.count_requests(hits, window).items():
            if total > limit:
                self._over[address] = window + 1.0

    def _result(self, kind: str, code: str) -> None:
        key = (kind, code)
        self.results[key] = self.results.get(key, 0) + 1

    def publish(self, now: float) -> HubSnapshot:
        """Make a new snapshot for the metrics (see :mod:`services.hub.metrics`); from then on :meth:`tick`
        makes one every PUBLISH_EVERY seconds. A hub without metrics never walks its libraries for them."""
        totals = self.store.totals(now)
        self.snapshot = HubSnapshot(
            requests=tuple((kind, code, count) for (kind, code), count in self.results.items()),
            latency=tuple(self.latency.counts), latency_sum=self.latency.sum,
            players=totals.players, libraries=totals.libraries,
            swarms=tuple((lib.hex(), seeds, leeches) for lib, seeds, leeches in self.store.swarms(now)),
            reports=self.handlers.reports, store_errors=self.internal_errors,
        )
        return self.snapshot

    def tick(self, now: float) -> None:
        """Periodic housekeeping: store maintenance, and every few seconds forgetting idle state."""
        if self.store_down and now < self._store_retry_at:
            return
        try:
            self._tick(now)
            if self.store_down:
                self._store_back()
        except StoreUnavailable as exc:
            self._store_lost(exc, now)

    def _tick(self, now: float) -> None:
        self.store.maintain(now)
        self._share_rates(now)
        if self.snapshot is not None and now >= self._next_publish:
            self._next_publish = now + PUBLISH_EVERY
            self.publish(now)
        self.rejections.flush(now)
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_EVERY
            self.rate.sweep(now)
            self.address_rate.sweep(now)
            self.unreachable.sweep(now)
            self.handlers.crowds.sweep(now)
        if now >= self._next_stats:
            self._next_stats = now + self.stats_every
            totals = self.store.totals(now)
            log.info(
                "hub_stats", players=totals.players, libraries=totals.libraries, rejected=self.rejected,
                **{f"requests_{kind}": count for kind, count in self._per_kind().items()},
            )
