"""Values the hub passes between its logic, its stores and its client.

Plain frozen dataclasses and enums: no protobuf, no sockets, no clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class RequestKind(enum.Enum):
    """What a request asked for; counted per kind and reported by health."""

    ANNOUNCE = "announce"
    GET_PEERS = "get_peers"
    SCRAPE = "scrape"
    REPORT = "report"
    HEALTH = "health"
    INVALID = "invalid"  # rejected before its kind was known


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """One player in one library, as the hub remembers it.

    ``expires_at`` is an absolute wall-clock time (seconds since the epoch) so
    it keeps its meaning across a hub restart.
    """

    library_id: bytes
    player_id: bytes
    endpoint: str
    seed: bool
    expires_at: float


@dataclass(frozen=True, slots=True)
class LibraryCounts:
    """Swarm size of one library: live seeders and leechers, completed downloads ever."""

    seeders: int = 0
    leechers: int = 0
    completed: int = 0


@dataclass(frozen=True, slots=True)
class Totals:
    """Distinct live players and libraries with at least one live player."""

    players: int
    libraries: int


@dataclass(frozen=True)
class HubLimits:
    """Every bound and timing the hub enforces; defaults suit a LAN swarm of thousands."""

    interval: int = 60  # seconds between periodic announces, told to players
    min_interval: int = 30  # players must not announce more often than this
    expiry_intervals: int = 2  # a player that misses this many intervals expires
    default_numwant: int = 50  # used when a request says numwant = 0
    max_numwant: int = 200
    max_request_bytes: int = 16 * 1024  # larger requests get TOO_LARGE
    max_message_bytes: int = 64 * 1024  # zmq.MAXMSGSIZE: larger frames drop the connection
    max_scrape: int = 100  # libraries per scrape request
    max_libraries_per_player: int = 1000
    rate: float = 200.0  # requests per second per client (ROUTER identity); 0 = unlimited
    burst: float = 400.0
    report_threshold: int = 3  # distinct reporters that make the hub drop an endpoint
    max_pending_pings: int = 256
    ping_cooldown: float = 60.0  # seconds an endpoint that answered a ping is not pinged again
    allowlist: frozenset[bytes] | None = field(default=None)  # library ids served; None = all

    @property
    def expiry(self) -> float:
        """Seconds after its last announce that a player is forgotten."""
        return float(self.interval * self.expiry_intervals)
