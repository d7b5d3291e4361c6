"""Where other players reach a player: the hub's address rules, without sockets."""

from __future__ import annotations

import pytest

from services.hub import addresses
from services.hub.addresses import announced_endpoint, for_requester, route_source
from services.hub.encode import peer_field
from services.wire.ids import InvalidEndpoint, parse_endpoint
from services.wire.pb import hub_pb2


@pytest.mark.parametrize(
    ("announced", "source", "recorded"),
    [
        ("tcp://0.0.0.0:7000", "10.0.0.5", "tcp://10.0.0.5:7000"),  # a wildcard: where it came from
        ("tcp://[::]:7000", "fd00::5", "tcp://[fd00::5]:7000"),
        ("tcp://0.0.0.0:7000", "127.0.0.1", "tcp://127.0.0.1:7000"),
        ("tcp://127.0.0.1:7000", "10.0.0.5", "tcp://10.0.0.5:7000"),  # loopback over a real link: corrected
        ("tcp://[::1]:7000", "10.0.0.5", "tcp://10.0.0.5:7000"),
        ("tcp://127.0.0.1:7000", "127.0.0.1", "tcp://127.0.0.1:7000"),  # same host: as announced
        ("tcp://10.9.9.9:7000", "10.0.0.5", "tcp://10.9.9.9:7000"),  # an explicit address wins
        ("tcp://seed.example:7000", "10.0.0.5", "tcp://seed.example:7000"),
        ("tcp://0.0.0.0:7000", "", "tcp://0.0.0.0:7000"),  # source unknown: left to validation
    ],
)
def test_announced_endpoint(announced: str, source: str, recorded: str) -> None:
    assert announced_endpoint(announced, source) == recorded


def endpoints(wires: list[bytes]) -> list[str]:
    reply = hub_pb2.PeersReply.FromString(b"".join(wires))
    return [peer.endpoint for peer in reply.peers]


WIRES = [peer_field(b"a" * 16, "tcp://10.0.0.7:7001", True), peer_field(b"b" * 16, "tcp://127.0.0.1:7002", False),
         peer_field(b"c" * 16, "tcp://[::1]:7003", False)]


def test_a_peer_on_the_hubs_host_reaches_a_remote_requester_at_the_hubs_address_facing_it() -> None:
    asked: list[str] = []

    def facing(requester: str) -> str:
        asked.append(requester)
        return "10.0.0.1"

    handed = for_requester(WIRES, "10.0.0.9", facing)
    assert endpoints(handed) == ["tcp://10.0.0.7:7001", "tcp://10.0.0.1:7002", "tcp://10.0.0.1:7003"]
    assert asked == ["10.0.0.9"]
    assert hub_pb2.PeersReply.FromString(b"".join(handed)).peers[1].player_id == b"b" * 16


def test_a_loopback_peer_is_never_handed_to_a_remote_requester_as_loopback() -> None:
    assert endpoints(for_requester(WIRES, "10.0.0.9", lambda requester: "")) == ["tcp://10.0.0.7:7001"]
    assert endpoints(for_requester(WIRES, "10.0.0.9", None)) == ["tcp://10.0.0.7:7001"]


@pytest.mark.parametrize("requester", ["127.0.0.1", "::1", ""])
def test_a_requester_on_the_hubs_host_or_unknown_gets_peers_as_recorded(requester: str) -> None:
    assert for_requester(WIRES, requester, lambda _: "10.0.0.1") == WIRES


def test_route_source_asks_the_kernel_for_the_route() -> None:
    assert route_source("127.0.0.1") == "127.0.0.1"
    assert route_source("not an address") == ""


@pytest.mark.parametrize("endpoint", ["tcp://h:²", "tcp://h:٣٣", "tcp://h:123456", "tcp://h:0", "tcp://h:-1"])
def test_ports_are_ascii_digits_in_range(endpoint: str) -> None:
    with pytest.raises(InvalidEndpoint):
        parse_endpoint(endpoint)


@pytest.mark.parametrize(
    ("endpoint", "source", "allowed"),
    [("tcp://198.51.100.1:7000", "198.51.100.1", True), ("tcp://198.51.100.1:7000", "::ffff:198.51.100.1", True),
     ("tcp://192.0.2.7:22", "198.51.100.1", False), ("tcp://example.org:22", "198.51.100.1", False),
     ("tcp://10.1.2.3:7000", "198.51.100.1", "10.0.0.0/8"), ("tcp://10.1.2.3:7000", "", True)],
)
def test_the_hub_may_ping_only_the_announcing_host_or_allowed_networks(
    endpoint: str, source: str, allowed: bool | str
) -> None:
    networks = addresses.networks((allowed,)) if isinstance(allowed, str) else ()
    assert addresses.may_ping(endpoint, source, networks) is bool(allowed)
