"""The hub's announce_batch: each announce answered as if alone, the batch rate-limited by what it holds."""

from __future__ import annotations

from typing import Any

from services.hub.model import RequestKind
from services.wire.pb import hub_pb2
from tests.unit.test_hub_logic import CLIENT, LIB, OTHER_LIB, T0, E, call, ep, error_of, make_logic, pid, request


def item(n: int, lib: bytes = LIB, **more: Any) -> hub_pb2.Announce:
    fields: dict[str, Any] = {"library_id": lib, "player_id": pid(n), "endpoint": ep(n), "left": 0,
                              "event": hub_pb2.STARTED, **more}
    return hub_pb2.Announce(**fields)


def lib(n: int) -> bytes:
    return n.to_bytes(32, "big")


def batch(*announces: hub_pb2.Announce) -> bytes:
    return request(announce_batch=hub_pb2.AnnounceBatch(announces=list(announces)))


def test_each_announce_of_a_batch_is_answered_in_order_as_if_alone() -> None:
    logic = make_logic()
    call(logic, request(announce=item(2, left=5)))  # a leecher of LIB
    reply = call(logic, batch(item(1), item(1, lib=OTHER_LIB), item(1, lib=b"short")))
    assert reply.request_id == 42 and reply.WhichOneof("body") == "announce_batch"
    first, second, bad = reply.announce_batch.replies
    assert [p.player_id for p in first.announce.peers] == [pid(2)]
    assert (first.announce.seeders, first.announce.leechers) == (1, 1)
    assert (second.announce.seeders, second.announce.leechers, second.request_id) == (1, 0, 1)
    assert error_of(bad) == E.INVALID_ARGUMENT and bad.request_id == 2
    stats = call(logic, request(scrape=hub_pb2.Scrape(library_ids=[LIB, OTHER_LIB]))).scrape.libraries
    assert [s.seeders for s in stats] == [1, 1]
    assert logic.counts[RequestKind.ANNOUNCE] == 4 and logic.counts[RequestKind.ANNOUNCE_BATCH] == 1


def test_the_per_player_library_cap_counts_each_announce_of_a_batch() -> None:
    logic = make_logic(max_libraries_per_player=3)
    replies = call(logic, batch(*(item(1, lib=lib(n)) for n in range(5)))).announce_batch.replies
    assert [r.WhichOneof("body") for r in replies] == ["announce"] * 3 + ["error"] * 2
    assert error_of(replies[3]) == E.FULL


def test_an_empty_or_oversized_batch_is_refused_whole() -> None:
    logic = make_logic(max_batch=4)
    assert error_of(call(logic, batch())) == E.INVALID_ARGUMENT
    assert error_of(call(logic, batch(*(item(1, lib=lib(n)) for n in range(5))))) == E.TOO_LARGE
    assert call(logic, request(health=hub_pb2.Health())).health.libraries == 0


def test_a_batch_costs_a_token_per_announce_as_lone_announces_would() -> None:
    logic = make_logic(rate=1.0, burst=5.0)
    five = batch(*(item(1, lib=lib(n)) for n in range(5)))  # all the client has
    assert call(logic, five).WhichOneof("body") == "announce_batch"
    assert error_of(call(logic, batch(item(1)))) == E.RATE_LIMITED  # none left
    three = batch(*(item(1, lib=lib(n)) for n in range(3)))
    assert call(logic, three, now=T0 + 3.0).WhichOneof("body") == "announce_batch"  # three tokens back: enough
    assert error_of(call(logic, three, now=T0 + 5.0)) == E.RATE_LIMITED  # two back: not enough for three


def test_another_client_is_not_charged_for_a_batch() -> None:
    logic = make_logic(rate=1.0, burst=1.0)
    assert call(logic, batch(item(1))).WhichOneof("body") == "announce_batch"
    assert call(logic, batch(item(2)), client=CLIENT + b"2").WhichOneof("body") == "announce_batch"
