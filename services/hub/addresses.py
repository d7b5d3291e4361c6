"""Where other players reach a player: learned from where its announce came from.

A player's Distributor listens on every interface by default and does not know
which of its addresses others can reach, so it announces a wildcard host
(``tcp://0.0.0.0:PORT``). The hub, like a BitTorrent tracker, takes the address
the announce came from (``source``, the connection's peer address). An explicit
address still wins, except a loopback one announced over a connection that is
not loopback: that one could only mislead remote players, so it is corrected.

A player on the hub's own host announces over loopback and is recorded at a
loopback address. Such a peer is handed to a remote requester at the hub host's
own address on the side facing that requester (``local_address``, which asks
the kernel for its route; see :func:`route_source`), never as loopback.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable

from services.hub.encode import peer_field
from services.wire.ids import InvalidEndpoint, canonical_address, make_endpoint, parse_endpoint
from services.wire.pb import hub_pb2

_LOOPBACK_MARKS = (b"tcp://127.", b"tcp://[::1]", b"tcp://localhost:")


@functools.lru_cache(maxsize=65536)
def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` spells, None for a name (cached: the same few sources ask on every request)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    ip = _ip(host)
    return host == "localhost" if ip is None else ip.is_loopback


def is_wildcard(host: str) -> bool:
    ip = _ip(host)
    return ip is not None and ip.is_unspecified


def announced_endpoint(announced: str, source: str) -> str:
    """The endpoint to record for a player that announced ``announced`` from address ``source``.

    ``source`` empty means unknown (a caller without a connection): the announced endpoint
    is kept. Raises InvalidEndpoint for an endpoint that cannot be parsed.
    """
    host, port = parse_endpoint(announced)
    if not source or _ip(source) is None:
        return announced
    if is_wildcard(host) or (is_loopback(host) and not is_loopback(source)):
        return make_endpoint(source, port)
    return announced


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """Parse CIDRs such as ``10.0.0.0/8``; raises ValueError naming a bad one."""
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise ValueError(f"not a network: {cidr!r} ({exc}); write it like 10.0.0.0/8") from None
    return tuple(out)


def may_ping(endpoint: str, source: str, allowed: tuple[Network, ...]) -> bool:
    """Whether the hub may connect to ``endpoint``, recorded for a player that announced from ``source``.

    Only the announcing host itself (so the hub cannot be made to probe anyone else's ports), or a
    host in a network the operator allows. No ``source`` means no network client (an in-process
    caller), which is trusted.
    """
    if not source:
        return True
    try:
        host, _ = parse_endpoint(endpoint)
    except InvalidEndpoint:
        return False
    host = canonical_address(host)
    ip = _ip(host)
    if ip is None:
        return False
    return host == canonical_address(source) or any(ip in network for network in allowed)


def for_requester(wires: list[bytes], requester: str, local_address: Callable[[str], str] | None) -> list[bytes]:
    """Encoded peers as a requester at ``requester`` may use them.

    Loopback peers (players on the hub's host) reach a remote requester at the hub's own
    address facing it, or are left out when that cannot be found. A loopback or unknown
    requester gets every peer as recorded.
    """
    if not requester or is_loopback(requester) or not any(mark in w for w in wires for mark in _LOOPBACK_MARKS):
        return wires
    local = local_address(requester) if local_address is not None else ""
    out = []
    for wire in wires:
        if not any(mark in wire for mark in _LOOPBACK_MARKS):
            out.append(wire)
            continue
        peer = hub_pb2.Peer.FromString(_field_body(wire))
        try:
            host, port = parse_endpoint(peer.endpoint)
        except InvalidEndpoint:
            continue
        if not is_loopback(host):
            out.append(wire)
        elif local:
            out.append(peer_field(peer.player_id, make_endpoint(local, port), peer.seed))
    return out


def _field_body(wire: bytes) -> bytes:
    """The Peer message inside one encoded ``peers`` field (key byte, varint length, body)."""
    index, shift, length = 1, 0, 0
    while True:
        byte = wire[index]
        length |= (byte & 0x7F) << shift
        index += 1
        if byte < 0x80:
            return wire[index : index + length]
        shift += 7


def route_source(destination: str) -> str:
    """This host's address on the route to ``destination`` ("" if there is none).

    A UDP socket's connect() only asks the kernel for a route: nothing is sent.
    """
    ip = _ip(destination)
    if ip is None:
        return ""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((destination, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return ""
