"""What :class:`services.hub.client.HubClient` returns and raises: no protobuf leaks out."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.wire.pb import common_pb2


class Reachability(enum.IntEnum):
    """Whether the hub could connect to the endpoint it hands out for a player; values match ``hub.proto``."""

    UNKNOWN = 0
    REACHABLE = 1
    UNREACHABLE = 2


class AnnounceEvent(enum.IntEnum):
    """Why a player announces; values match ``hub.proto``."""

    PERIODIC = 0
    STARTED = 1
    COMPLETED = 2
    STOPPED = 3


@dataclass(frozen=True)
class PeerInfo:
    """Another player of the same library: where its distributor listens, and its CURVE key (b"": in clear)."""

    player_id: bytes
    endpoint: str
    seed: bool
    public_key: bytes = b""


@dataclass(frozen=True)
class AnnounceResult:
    """Peers to try, swarm size, when to announce next (seconds), and how the hub sees this player."""

    peers: tuple[PeerInfo, ...]
    seeders: int
    leechers: int
    interval: int
    min_interval: int
    endpoint: str = ""  # where the hub hands this player out
    reachable: Reachability = Reachability.UNKNOWN


@dataclass(frozen=True)
class PeersResult:
    peers: tuple[PeerInfo, ...]
    seeders: int
    leechers: int


@dataclass(frozen=True)
class LibraryStats:
    library_id: bytes
    seeders: int
    leechers: int
    completed: int


@dataclass(frozen=True)
class HubHealth:
    """Live players and libraries, requests answered per kind (plus ``rejected``), uptime in seconds."""

    players: int
    libraries: int
    requests: dict[str, int]
    uptime: float
    store: str


class HubClientError(Exception):
    """Base of every error the hub client raises."""


class HubUnavailable(HubClientError):
    """No hub answered: every attempt timed out. Check the hub is running and the endpoints are right."""

    def __init__(self, tried: list[str], timeout: float) -> None:
        self.tried = tried
        super().__init__(
            f"no hub answered after {len(tried)} attempt(s) of {timeout:g}s ({', '.join(dict.fromkeys(tried))}); "
            "check that a hub runs there and the address is reachable"
        )


class HubRefused(HubClientError):
    """The hubs refused this player's connection at the handshake (libzmq tells the client nothing else)."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(dict.fromkeys(reasons)))


class HubError(HubClientError):
    """The hub answered with an error; ``code`` is a ``common.ErrorCode`` value."""

    RETRYABLE = frozenset({common_pb2.RATE_LIMITED, common_pb2.BUSY, common_pb2.INTERNAL, common_pb2.UNAVAILABLE})

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"hub refused the request ({self.code_name}): {message}")

    @property
    def code_name(self) -> str:
        try:
            return common_pb2.ErrorCode.Name(self.code)  # type: ignore[arg-type]
        except ValueError:
            return f"ERROR_{self.code}"

    @property
    def retryable(self) -> bool:
        """True for errors worth retrying later (rate limited, busy, internal, unavailable)."""
        return self.code in self.RETRYABLE
