"""One method per hub request kind: validate every field, act on the store, encode the reply.

Each handler takes the decoded request and ``now`` and returns the serialized
reply (announce and get_peers replies are hand-encoded, see
:mod:`services.hub.encode`). It raises
:class:`ProtocolError` for anything it refuses; :class:`HubLogic` turns that
into an error reply. Routine requests are logged only with ``log_requests``
(an event costs more than the request); state changes always are.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from services.hub import addresses, validate
from services.hub.crowds import Crowds
from services.hub.encode import announce_reply, intervals, peer_field, peers_reply
from services.hub.model import HubLimits, LibraryCounts, PeerRecord
from services.hub.reports import Unreachable
from services.hub.store import HubStore
from services.runtime.logs import get_logger
from services.wire import names
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.ids import InvalidEndpoint
from services.wire.pb import hub_pb2
from services.wire.versions import HUB

_PERIODIC = hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED
_STOPPED = hub_pb2.STOPPED
_COMPLETED = hub_pb2.COMPLETED
_MAX_ENDPOINT_CACHE = 100_000

log = get_logger("events")


@dataclass(slots=True)
class PendingAnnounce:
    """An announce validated and waiting for its store refresh (see :meth:`RequestHandlers.announce_begin`)."""

    request_id: int
    record: PeerRecord
    want: int
    event: int
    pingable: bool
    keyed: bool = False  # announced over CURVE: its endpoint is bound to its key


def reply_head(request: hub_pb2.HubRequest) -> hub_pb2.HubReply:
    """An empty reply to ``request``: protocol version and the request's id."""
    return hub_pb2.HubReply(version=HUB.current, request_id=request.request_id)


class RequestHandlers:
    """Announce, get_peers, scrape and report over one store.

    Each handler takes the request, ``now`` and ``source``: the address the request came
    from ("" when unknown), which decides where an announcing player is reached and how
    peers on the hub's own host are handed out (see :mod:`services.hub.addresses`).
    """

    def __init__(
        self, store: HubStore, limits: HubLimits, unreachable: Unreachable, rng: random.Random, log_requests: bool,
        local_address: Callable[[str], str] | None = None,
    ) -> None:
        self.store = store
        self.limits = limits
        self.unreachable = unreachable
        self.rng = rng
        self.log_requests = log_requests
        self.local_address = local_address
        self._intervals = intervals(limits.interval, limits.min_interval)
        self._endpoints: dict[tuple[str, str], tuple[str, bool]] = {}  # (announced, source) -> _endpoint()
        self._wires: dict[tuple[bytes, str, bool, str], bytes] = {}  # (player, endpoint, seed, key) -> peer_field()
        self._ping_networks = addresses.networks(limits.ping_networks)
        self.crowds = Crowds(limits.max_players_per_address, limits.expiry)
        self.reports = 0  # unreachable reports received (for metrics)

    def _endpoint(self, announced: str, source: str) -> tuple[str, bool]:
        """Where others reach a player that announced ``announced`` from ``source``, validated, and
        whether the hub may ping it there (see :func:`addresses.may_ping`)."""
        key = (announced, source)
        found = self._endpoints.get(key)
        if found is None:
            try:
                recorded = validate.endpoint(addresses.announced_endpoint(announced, source))
            except InvalidEndpoint as exc:
                raise ProtocolError(ErrorCode.INVALID_ARGUMENT, f"endpoint: {exc}") from None
            if len(self._endpoints) >= _MAX_ENDPOINT_CACHE:
                self._endpoints.clear()
            found = self._endpoints[key] = (recorded, addresses.may_ping(recorded, source, self._ping_networks))
        return found

    def announce_begin(self, request: hub_pb2.HubRequest, now: float, source: str = "",
                       key: bytes = b"") -> bytes | PendingAnnounce:
        """Validate an announce; its reply when it needs no refresh (stopped, completed), else what to refresh.

        The caller refreshes the pending ones, many at once (the store's ``refresh_start``), and finishes each
        with :meth:`announce_end`: a hub answering a batch of announces makes one round trip to a remote
        store for many of them. ``key`` is the announcing connection's CURVE key (empty in clear): unless
        the announce says its distributor serves in clear, it is handed out with the player's endpoint."""
        msg = request.announce
        store, limits = self.store, self.limits
        library_id = validate.library_id(msg.library_id, limits)
        player_id = validate.player_id(msg.player_id)
        event = validate.event(msg.event)
        if event == _STOPPED:
            gone = store.remove(library_id, player_id, now)
            self.crowds.gone(library_id, source, player_id)
            log.info("announce", kind="stopped", library=library_id.hex(), player=player_id.hex(), known=bool(gone))
            seeders, leechers, _ = store.counts(library_id, now)
            return announce_reply(request.request_id, seeders, leechers, self._intervals, [])
        endpoint, pingable = self._endpoint(msg.endpoint, source)
        seed = msg.left == 0
        if event == _COMPLETED and not seed:
            raise ProtocolError(ErrorCode.INVALID_ARGUMENT, f"completed announce with left={msg.left}; send left=0")
        want = validate.numwant(msg.numwant, limits)
        served_key = "" if msg.plain else key.decode("ascii")
        record = PeerRecord(library_id, player_id, endpoint, seed, now + limits.expiry,
                            self._wire(player_id, endpoint, seed, served_key))
        pending = PendingAnnounce(request.request_id, record, want, event, pingable, bool(key))
        if event == _COMPLETED:  # counted once, on the full path
            return self.announce_end(pending, None, now, source)
        return pending

    def announce_end(self, pending: PendingAnnounce, fast: tuple[list[bytes], LibraryCounts] | None, now: float,
                     source: str = "") -> bytes:
        """Finish an announce given its refresh's result (None: not a plain refresh, take the full path)."""
        store, record, event = self.store, pending.record, pending.event
        library_id, player_id, endpoint, seed = record.library_id, record.player_id, record.endpoint, record.seed
        if fast is not None:
            peers, counts = fast
        else:
            known = store.get(library_id, player_id, now)
            if known is None or known.endpoint != endpoint:
                if pending.keyed:
                    self._check_claim(library_id, player_id, endpoint, now)
                self._check_room(library_id, player_id, endpoint, known is None, now)
            if known is None and self.crowds.full(library_id, source, player_id, now):
                raise ProtocolError(ErrorCode.FULL, f"{self.limits.max_players_per_address} players of this library "
                                    f"announce from {source} already; stop one before starting another")
            store.upsert(record, now)
            if event == _COMPLETED and (known is None or not known.seed):
                store.add_completed(library_id)
            peers, counts = store.refresh(record, pending.want, now, seeds=not seed, rng=self.rng) or (
                [], LibraryCounts())
        self.crowds.seen(library_id, source, player_id, now)
        peers = addresses.for_requester(peers, source, self.local_address)
        if event != _PERIODIC or self.log_requests:
            level = log.debug if event == _PERIODIC else log.info
            level(
                "announce", kind=names.announce_event(event), library=library_id.hex(), player=player_id.hex(),
                endpoint=endpoint, seed=seed, peers=len(peers),
            )
        if pending.pingable:
            self.unreachable.allow(endpoint, now)
        reachable = self.unreachable.probe(endpoint, now)
        return announce_reply(pending.request_id, counts.seeders, counts.leechers, self._intervals, peers,
                              endpoint, reachable)

    def _wire(self, player_id: bytes, endpoint: str, seed: bool, public_key: str) -> bytes:
        """The peer as replies encode it, cached: most announces repeat the last one."""
        key = (player_id, endpoint, seed, public_key)
        wire = self._wires.get(key)
        if wire is None:
            if len(self._wires) >= _MAX_ENDPOINT_CACHE:
                self._wires.clear()
            wire = self._wires[key] = peer_field(player_id, endpoint, seed, public_key)
        return wire

    def _check_claim(self, library_id: bytes, player_id: bytes, endpoint: str, now: float) -> None:
        """Refuse an endpoint another live player of the library announced: nobody takes over a peer's place."""
        holders = [holder for holder in self.store.find_endpoint(library_id, endpoint, now) if holder != player_id]
        if holders:
            log.warning("endpoint_claim_refused", library=library_id.hex(), player=player_id.hex(), endpoint=endpoint,
                        holder=holders[0].hex())
            raise ProtocolError(ErrorCode.FORBIDDEN, f"{endpoint} is announced by another player of this library; "
                                "announce the endpoint your own distributor listens on")

    def _check_room(self, library_id: bytes, player_id: bytes, endpoint: str, new_player: bool, now: float) -> None:
        """Refuse with FULL an entry past one of the store's caps (a refresh of a known entry always fits)."""
        limits = self.limits
        room = self.store.room(library_id, player_id, endpoint, now)
        if room.endpoint_entries >= limits.max_libraries_per_endpoint:
            raise ProtocolError(ErrorCode.FULL, f"{endpoint} is announced in {limits.max_libraries_per_endpoint} "
                                "libraries already; stop one before starting another")
        if not new_player:
            return
        if room.player_libraries >= limits.max_libraries_per_player:
            raise ProtocolError(ErrorCode.FULL, f"player is in {limits.max_libraries_per_player} libraries "
                                "already; stop one before starting another")
        if room.library_players >= limits.max_players_per_library:
            raise ProtocolError(ErrorCode.FULL, f"this library has {limits.max_players_per_library} players, "
                                "the most this hub holds; retry later or use another hub")
        if room.entries >= limits.max_entries:
            raise ProtocolError(ErrorCode.FULL, f"this hub holds {limits.max_entries} players in libraries, its "
                                "limit; retry later or use another hub")

    def get_peers(self, request: hub_pb2.HubRequest, now: float, source: str = "") -> bytes:
        msg = request.get_peers
        library_id = validate.library_id(msg.library_id, self.limits)
        player_id = validate.player_id(msg.player_id, optional=True)
        want = validate.numwant(msg.numwant, self.limits)
        me = self.store.get(library_id, player_id, now) if player_id else None
        seeds = me is None or not me.seed
        peers = self.store.sample_wires(library_id, want, now, exclude=player_id, seeds=seeds, rng=self.rng)
        peers = addresses.for_requester(peers, source, self.local_address)
        seeders, leechers, _ = self.store.counts(library_id, now)
        if self.log_requests:
            log.debug("get_peers", library=library_id.hex(), peers=len(peers))
        return peers_reply(request.request_id, seeders, leechers, peers)

    def scrape(self, request: hub_pb2.HubRequest, now: float, source: str = "") -> bytes:
        library_ids = validate.scrape_ids(list(request.scrape.library_ids), self.limits)
        head = reply_head(request)
        out = head.scrape
        for library_id in library_ids:
            counts = self.store.counts(library_id, now)
            out.libraries.add(
                library_id=library_id, seeders=counts.seeders, leechers=counts.leechers, completed=counts.completed
            )
        if self.log_requests:
            log.debug("scrape", libraries=len(library_ids))
        return head.SerializeToString()

    def report(self, request: hub_pb2.HubRequest, now: float, source: str = "") -> bytes:
        msg = request.report
        self.reports += 1
        library_id = validate.library_id(msg.library_id, self.limits)
        reporter = validate.player_id(msg.reporter_id, "reporter_id")
        endpoint = validate.endpoint(msg.endpoint)
        if self.store.get(library_id, reporter, now) is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "reporter is not in this library; announce before reporting")
        head = reply_head(request)
        head.report.dropped = False  # only a failed ping of the hub's own drops a player, later
        if self.store.find_endpoint(library_id, endpoint, now):
            queued = self.unreachable.want_ping(library_id, endpoint, now)
            if queued:
                log.info("report", library=library_id.hex(), endpoint=endpoint, reporter=reporter.hex())
        return head.SerializeToString()

    def ping_done(self, endpoint: str, reachable: bool, now: float) -> None:
        """Apply a ping result: an unreachable endpoint is dropped from the libraries that reported it."""
        for library_id in self.unreachable.ping_done(endpoint, reachable, now):
            dropped = self.store.remove_endpoint(library_id, endpoint, now)
            log.info("player_dropped", reason="ping", library=library_id.hex(), endpoint=endpoint, players=len(dropped))
        if reachable:
            log.info("ping_ok", endpoint=endpoint)
