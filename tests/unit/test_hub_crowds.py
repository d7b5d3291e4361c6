"""Fake players from one address: a bound per library, so real newcomers still get in."""

from __future__ import annotations

import pytest

from services.hub.crowds import Crowds
from services.hub.logic import HubLogic
from services.wire.pb import hub_pb2
from tests.unit.test_hub_logic import CLIENT, LIB, OTHER_LIB, T0, E, announce, make_logic, pid, request

ATTACKER, HONEST = "203.0.113.9", "198.51.100.4"


def answer(logic: HubLogic, body: bytes, source: str, now: float = T0) -> hub_pb2.HubReply:
    return hub_pb2.HubReply.FromString(logic.handle(CLIENT + source.encode(), body, now, source))


def kind(reply: hub_pb2.HubReply) -> str:
    return "FULL" if reply.WhichOneof("body") == "error" and reply.error.code == E.FULL else str(
        reply.WhichOneof("body"))


def wildcard(n: int, lib: bytes = LIB, event: hub_pb2.AnnounceEvent.ValueType = hub_pb2.STARTED) -> bytes:
    """Player ``n`` announcing a wildcard endpoint (recorded at the address it came from), port 7000 + n."""
    return request(announce=hub_pb2.Announce(library_id=lib, player_id=pid(n), endpoint=f"tcp://0.0.0.0:{7000 + n}",
                                             left=100, event=event))


def test_one_address_cannot_fill_a_library_with_made_up_players() -> None:
    logic = make_logic(max_players_per_address=8)
    kinds = [kind(answer(logic, wildcard(n), ATTACKER)) for n in range(20)]
    assert kinds == ["announce"] * 8 + ["FULL"] * 12
    refused = answer(logic, wildcard(99), ATTACKER)
    assert ATTACKER in refused.error.message and "stop one" in refused.error.message
    # Others still get in, and see at most 8 of the made-up players.
    reply = answer(logic, wildcard(500), HONEST)
    assert kind(reply) == "announce" and len(reply.announce.peers) == 8
    assert kind(answer(logic, wildcard(20, lib=OTHER_LIB), ATTACKER)) == "announce"  # per library


def test_known_players_refresh_and_a_stop_makes_room() -> None:
    logic = make_logic(max_players_per_address=2)
    assert [kind(answer(logic, wildcard(n), ATTACKER)) for n in range(3)] == ["announce", "announce", "FULL"]
    later = T0 + 30
    assert kind(answer(logic, wildcard(0, event=hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED), ATTACKER, later)) == "announce"
    assert kind(answer(logic, wildcard(1, event=hub_pb2.STOPPED), ATTACKER, later)) == "announce"
    assert kind(answer(logic, wildcard(2), ATTACKER, later)) == "announce"


def test_players_kept_alive_by_their_announces_stay_counted() -> None:
    logic = make_logic(max_players_per_address=2)
    for n in range(2):
        answer(logic, wildcard(n), ATTACKER)
    now = T0
    for _ in range(10):  # far past one expiry, each player announcing every interval
        now += 60
        for n in range(2):
            periodic = wildcard(n, event=hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED)
            assert kind(answer(logic, periodic, ATTACKER, now)) == "announce"
        logic.tick(now)
    assert kind(answer(logic, wildcard(3), ATTACKER, now)) == "FULL"


def test_players_that_expired_leave_room() -> None:
    logic = make_logic(max_players_per_address=2)
    for n in range(2):
        answer(logic, wildcard(n), ATTACKER)
    logic.tick(T0 + 1000)
    assert kind(answer(logic, wildcard(3), ATTACKER, T0 + 1000)) == "announce"


@pytest.mark.parametrize("source", ["127.0.0.1", "::1", ""])
def test_the_hubs_own_host_and_in_process_callers_are_not_counted(source: str) -> None:
    logic = make_logic(max_players_per_address=2)
    assert {kind(answer(logic, announce(n), source)) for n in range(5)} == {"announce"}


def test_crowds_forget_what_expired() -> None:
    crowds = Crowds(limit=1, expiry=10.0)
    crowds.seen(LIB, ATTACKER, pid(1), 0.0)
    assert crowds.full(LIB, ATTACKER, pid(2), 5.0) and not crowds.full(LIB, ATTACKER, pid(1), 5.0)
    crowds.sweep(10.0)
    assert len(crowds) == 0 and not crowds.full(LIB, ATTACKER, pid(2), 10.0)


@pytest.mark.parametrize("endpoint", ["tcp://224.0.0.1:7000", "tcp://239.255.255.250:1900", "tcp://255.255.255.255:7000",
                                      "tcp://240.0.0.1:7000", "tcp://[ff02::1]:7000"])
def test_multicast_and_reserved_endpoints_are_refused(endpoint: str) -> None:
    logic = make_logic()
    body = request(announce=hub_pb2.Announce(library_id=LIB, player_id=pid(1), endpoint=endpoint, left=1,
                                             event=hub_pb2.STARTED))
    reply = answer(logic, body, HONEST)
    assert reply.WhichOneof("body") == "error" and reply.error.code == E.INVALID_ARGUMENT
    assert "multicast" in reply.error.message
