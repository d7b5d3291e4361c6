"""Hand-encoded announce and peers replies: the hub's hot path.

Building protobuf objects per reply (a ``Peer`` per peer, then the reply) was
the largest cost of an announce. Protobuf's wire format makes a faster way
exact: a message is the concatenation of its encoded fields. So each peer is
encoded once per change as the ``peers`` field (number 1 in both
AnnounceReply and PeersReply) and kept in its record (``PeerRecord.wire``);
a reply is a few varint fields plus the joined peer fields, wrapped as field
10 (announce) or 11 (peers) of HubReply. Field numbers come from
``proto/hub.proto``; the tests decode every reply with the generated classes.
"""

from __future__ import annotations

from services.wire.pb import hub_pb2
from services.wire.versions import HUB

_SMALL = [bytes([n]) for n in range(128)]
_TWO = 1 << 14


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    if value < 128:
        return _SMALL[value]
    if value < _TWO:
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


# HubReply: version = 1, request_id = 2, announce = 10, peers = 11.
_VERSION = _key(1, 0) + varint(HUB.current)
_REQUEST_ID = _key(2, 0)
_ANNOUNCE = _key(10, 2)
_PEERS = _key(11, 2)
# AnnounceReply: peers = 1, seeders = 2, leechers = 3, interval = 4, min_interval = 5, endpoint = 6,
# reachable = 7 (PeersReply: 1-3).
_PEER = _key(1, 2)
_SEEDERS = _key(2, 0)
_LEECHERS = _key(3, 0)
_INTERVAL = _key(4, 0)
_MIN_INTERVAL = _key(5, 0)
_ENDPOINT = _key(6, 2)
_REACHABLE = _key(7, 0)


def peer_field(player_id: bytes, endpoint: str, seed: bool, public_key: str = "") -> bytes:
    """One peer encoded as the ``peers`` field of AnnounceReply / PeersReply."""
    body = hub_pb2.Peer(player_id=player_id, endpoint=endpoint, seed=seed, public_key=public_key).SerializeToString()
    return _PEER + varint(len(body)) + body


def _wrap(request_id: int, field_key: bytes, parts: list[bytes]) -> bytes:
    body = b"".join(parts)
    if request_id:
        return b"".join((_VERSION, _REQUEST_ID, varint(request_id), field_key, varint(len(body)), body))
    return b"".join((_VERSION, field_key, varint(len(body)), body))


def intervals(interval: int, min_interval: int) -> bytes:
    """The constant tail of every AnnounceReply: interval and min_interval fields."""
    return _INTERVAL + varint(interval) + _MIN_INTERVAL + varint(min_interval)


def announce_reply(request_id: int, seeders: int, leechers: int, tail: bytes, peers: list[bytes],
                   endpoint: str = "", reachable: int = 0) -> bytes:
    """A serialized HubReply carrying an AnnounceReply.

    ``tail`` comes from :func:`intervals`, each of ``peers`` from :func:`peer_field`; ``endpoint``
    is where the hub hands the announcing player out, ``reachable`` a ``Reachability`` value.
    """
    parts = [_SEEDERS, varint(seeders), _LEECHERS, varint(leechers), tail]
    if endpoint:
        raw = endpoint.encode()
        parts += [_ENDPOINT, varint(len(raw)), raw]
    if reachable:
        parts += [_REACHABLE, varint(reachable)]
    parts += peers
    return _wrap(request_id, _ANNOUNCE, parts)


def peers_reply(request_id: int, seeders: int, leechers: int, peers: list[bytes]) -> bytes:
    """A serialized HubReply carrying a PeersReply."""
    parts = [_SEEDERS, varint(seeders), _LEECHERS, varint(leechers)]
    parts += peers
    return _wrap(request_id, _PEERS, parts)
