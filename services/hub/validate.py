"""Field checks for hub requests: each returns a clean value or raises ProtocolError.

Messages name the field and say what a valid value looks like, because they
are shown to the player that sent the request.
"""

from __future__ import annotations

import ipaddress

from services.hub.model import HubLimits
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.ids import LIBRARY_ID_LEN, PLAYER_ID_LEN, InvalidEndpoint, parse_endpoint
from services.wire.pb import hub_pb2

_EVENTS = frozenset(hub_pb2.AnnounceEvent.values())


def library_id(raw: bytes, limits: HubLimits) -> bytes:
    """A 32-byte library id on the allowlist (when there is one)."""
    if len(raw) != LIBRARY_ID_LEN:
        raise ProtocolError(
            ErrorCode.INVALID_ARGUMENT, f"library_id must be {LIBRARY_ID_LEN} bytes, got {len(raw)}"
        )
    if limits.allowlist is not None and raw not in limits.allowlist:
        raise ProtocolError(ErrorCode.FORBIDDEN, f"library {raw.hex()} is not served by this hub")
    return raw


def player_id(raw: bytes, field: str = "player_id", *, optional: bool = False) -> bytes:
    """A 16-byte player id (or empty, when ``optional``)."""
    if optional and not raw:
        return raw
    if len(raw) != PLAYER_ID_LEN:
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT, f"{field} must be {PLAYER_ID_LEN} bytes, got {len(raw)}")
    return raw


def endpoint(text: str, field: str = "endpoint") -> str:
    """A ``tcp://host:port`` endpoint other players can connect to (not a wildcard address)."""
    try:
        host, _ = parse_endpoint(text)
    except InvalidEndpoint as exc:
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT, f"{field}: {exc}") from None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return text  # a name
    if ip.is_unspecified:
        raise ProtocolError(
            ErrorCode.INVALID_ARGUMENT, f"{field} {text!r} is a wildcard; announce an address others can reach"
        )
    if ip.is_multicast or (ip.version == 4 and ip.is_reserved):  # 224/4, 240/4 (255.255.255.255), ff00::/8
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT, f"{field} {text!r} is a multicast or reserved address, "
                            "where no player listens; announce your distributor's own address")
    return text


def numwant(requested: int, limits: HubLimits) -> int:
    """Peers to return: 0 means the default; anything above the cap is capped."""
    if requested == 0:
        return limits.default_numwant
    return min(requested, limits.max_numwant)


def event(value: int) -> int:
    """A known announce event."""
    if value not in _EVENTS:
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT, f"unknown announce event {value}; expected 0-3")
    return value


def scrape_ids(raw: list[bytes], limits: HubLimits) -> list[bytes]:
    """One to ``max_scrape`` valid library ids."""
    if not raw:
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT, "scrape needs at least one library_id")
    if len(raw) > limits.max_scrape:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"scrape asks for {len(raw)} libraries; ask at most {limits.max_scrape} at a time"
        )
    return [library_id(item, limits) for item in raw]
