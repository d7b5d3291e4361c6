"""Values the hub passes between its logic, its stores and its client.

Plain immutable values (NamedTuples where one is built per request) and
enums: no protobuf, no sockets, no clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple


class RequestKind(enum.Enum):
    """What a request asked for; counted per kind and reported by health."""

    ANNOUNCE = "announce"
    GET_PEERS = "get_peers"
    SCRAPE = "scrape"
    REPORT = "report"
    HEALTH = "health"
    ANNOUNCE_BATCH = "announce_batch"  # several announces of one player; each is also counted as an announce
    INVALID = "invalid"  # rejected before its kind was known


class PeerRecord(NamedTuple):
    """One player in one library, as the hub remembers it (a NamedTuple: built on every announce).

    ``expires_at`` is an absolute wall-clock time (seconds since the epoch) so
    it keeps its meaning across a hub restart. ``wire`` is this peer as the
    hub encodes it in replies (:func:`services.hub.encode.peer_field`),
    computed once per change by the logic; stores keep and return it as given.
    """

    library_id: bytes
    player_id: bytes
    endpoint: str
    seed: bool
    expires_at: float
    wire: bytes


class LibraryCounts(NamedTuple):
    """Swarm size of one library: live seeders and leechers, completed downloads ever."""

    seeders: int = 0
    leechers: int = 0
    completed: int = 0


class Totals(NamedTuple):
    """Distinct live players, libraries with at least one live player, and (library, player) entries."""

    players: int
    libraries: int
    entries: int = 0


class Room(NamedTuple):
    """What the caps on a new entry look at: live entries announcing its endpoint, libraries its player is
    live in, players live in its library, and entries over all libraries."""

    endpoint_entries: int
    player_libraries: int
    library_players: int
    entries: int


MAX_LIBRARIES_PER_PLAYER = 1000  # a player may hold this many libraries, and announce them all at once (burst)


@dataclass(frozen=True)
class HubLimits:
    """Every bound and timing the hub enforces; defaults suit a LAN swarm of thousands."""

    interval: int = 60  # seconds between periodic announces, told to players
    min_interval: int = 30  # players must not announce more often than this
    expiry_intervals: int = 2  # a player that misses this many intervals expires
    default_numwant: int = 50  # used when a request says numwant = 0
    max_numwant: int = 200
    max_request_bytes: int = 16 * 1024  # larger requests get TOO_LARGE
    max_message_bytes: int = 17 * 1024  # zmq.MAXMSGSIZE: larger frames drop the connection
    max_scrape: int = 100  # libraries per scrape request
    max_batch: int = 100  # announces per announce_batch request (about 10 KiB)
    max_libraries_per_player: int = MAX_LIBRARIES_PER_PLAYER
    max_libraries_per_endpoint: int = 1000  # players announcing one endpoint, over all libraries
    max_players_per_library: int = 50_000
    max_players_per_address: int = 256  # players of one library announced from one address (not loopback)
    max_entries: int = 200_000  # (library, player) entries held in all; past it new players get FULL
    connections_per_address: int = 128  # live TCP connections from one address; more are refused at handshake
    max_connections: int = 4096
    rate: float = 200.0  # requests per second per client (ROUTER identity); 0 = unlimited
    burst: float = float(MAX_LIBRARIES_PER_PLAYER)  # a player announces every library it may hold at once
    address_factor: float = 10.0  # an address (whatever identities it uses) may send this many clients' worth
    max_pending_pings: int = 256
    ping_cooldown: float = 60.0  # seconds an endpoint that answered a ping is not pinged again
    allowlist: frozenset[bytes] | None = field(default=None)  # library ids served; None = all
    # Where the hub may ping an endpoint that was not announced from its own address (CIDRs; none by default).
    ping_networks: tuple[str, ...] = ()

    @property
    def expiry(self) -> float:
        """Seconds after its last announce that a player is forgotten."""
        return float(self.interval * self.expiry_intervals)

    @property
    def refresh_slack(self) -> float:
        """How far a persisted expiry may lag the live one: half an interval."""
        return self.interval / 2
