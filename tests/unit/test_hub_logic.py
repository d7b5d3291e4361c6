"""HubLogic without sockets: bytes in, bytes out, time passed in."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.hub.encode import announce_reply, intervals, peer_field, peers_reply
from services.hub.logic import HubLogic
from services.hub.model import HubLimits, RequestKind
from services.hub.store_errors import StoreUnavailable
from services.hub.store_memory import MemoryStore
from services.wire.pb import common_pb2, hub_pb2
from services.wire.versions import HUB

T0 = 1_700_000_000.0
LIB = b"L" * 32
OTHER_LIB = b"O" * 32
CLIENT = b"\x00client"
E = common_pb2.ErrorCode


def pid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def ep(n: int) -> str:
    return f"tcp://10.1.{n // 250}.{n % 250 + 1}:7000"


def make_logic(**limits: Any) -> HubLogic:
    return HubLogic(MemoryStore(), replace(HubLimits(rate=0), **limits), started_at=T0, rng=random.Random(5))


def request(**body: Any) -> bytes:
    return hub_pb2.HubRequest(version=1, request_id=42, **body).SerializeToString()


def announce(n: int, *, lib: bytes = LIB, event: int = hub_pb2.STARTED, left: int = 100, **more: Any) -> bytes:
    fields: dict[str, Any] = {"library_id": lib, "player_id": pid(n), "endpoint": ep(n), "left": left, **more}
    return request(announce=hub_pb2.Announce(event=event, **fields))  # type: ignore[arg-type]


def raw_announce(**fields: Any) -> bytes:
    return request(announce=hub_pb2.Announce(**{"library_id": LIB, "player_id": pid(1), "endpoint": ep(1), **fields}))


def report(endpoint: str, reporter: int = 1) -> bytes:
    return request(report=hub_pb2.ReportUnreachable(library_id=LIB, reporter_id=pid(reporter), endpoint=endpoint))


def call(logic: HubLogic, body: bytes, now: float = T0, client: bytes = CLIENT) -> hub_pb2.HubReply:
    return hub_pb2.HubReply.FromString(logic.handle(client, body, now))


def error_of(reply: hub_pb2.HubReply) -> int:
    assert reply.WhichOneof("body") == "error", reply
    return reply.error.code


def test_announce_returns_other_players_counts_and_intervals() -> None:
    logic = make_logic()
    for n in range(5):
        call(logic, announce(n, left=0 if n == 0 else 10))
    reply = call(logic, announce(9))
    assert reply.request_id == 42
    got = reply.announce
    assert {p.player_id for p in got.peers} == {pid(n) for n in range(5)}
    assert {p.endpoint for p in got.peers if p.player_id == pid(0)} == {ep(0)}
    assert [p.seed for p in got.peers if p.player_id == pid(0)] == [True]
    assert (got.seeders, got.leechers, got.interval, got.min_interval) == (1, 5, 60, 30)


def test_a_seed_is_given_leechers_only() -> None:
    logic = make_logic()
    call(logic, announce(1, left=0))
    call(logic, announce(2, left=5))
    peers = call(logic, announce(3, left=0)).announce.peers
    assert [p.player_id for p in peers] == [pid(2)]


def test_stopped_removes_at_once() -> None:
    logic = make_logic()
    call(logic, announce(1))
    reply = call(logic, announce(1, event=hub_pb2.STOPPED))
    assert (reply.announce.seeders, reply.announce.leechers) == (0, 0)
    assert call(logic, request(get_peers=hub_pb2.GetPeers(library_id=LIB))).peers.peers == []


def test_completed_counts_once_and_needs_left_zero() -> None:
    logic = make_logic()
    call(logic, announce(1))
    assert error_of(call(logic, announce(1, event=hub_pb2.COMPLETED, left=3))) == E.INVALID_ARGUMENT
    call(logic, announce(1, event=hub_pb2.COMPLETED, left=0))
    call(logic, announce(1, event=hub_pb2.COMPLETED, left=0))
    stats = call(logic, request(scrape=hub_pb2.Scrape(library_ids=[LIB, OTHER_LIB]))).scrape.libraries
    assert [(s.library_id, s.seeders, s.leechers, s.completed) for s in stats] == [
        (LIB, 1, 0, 1),
        (OTHER_LIB, 0, 0, 0),
    ]


def test_players_expire_after_two_missed_intervals() -> None:
    logic = make_logic(interval=10)
    call(logic, announce(1))
    call(logic, announce(2), now=T0 + 15)
    ask = request(get_peers=hub_pb2.GetPeers(library_id=LIB))
    assert len(call(logic, ask, now=T0 + 19.9).peers.peers) == 2
    assert [p.player_id for p in call(logic, ask, now=T0 + 20).peers.peers] == [pid(2)]
    logic.tick(T0 + 40)
    assert call(logic, request(health=hub_pb2.Health()), now=T0 + 40).health.players == 0


def test_numwant_is_capped_and_zero_means_the_default() -> None:
    logic = make_logic(default_numwant=3, max_numwant=5)
    for n in range(10):
        call(logic, announce(n))
    assert len(call(logic, announce(20, numwant=0)).announce.peers) == 3
    assert len(call(logic, announce(20, numwant=1000)).announce.peers) == 5
    get = request(get_peers=hub_pb2.GetPeers(library_id=LIB, numwant=4_000_000_000))
    assert len(call(logic, get).peers.peers) == 5


def test_get_peers_excludes_the_asker() -> None:
    logic = make_logic()
    call(logic, announce(1))
    call(logic, announce(2))
    got = call(logic, request(get_peers=hub_pb2.GetPeers(library_id=LIB, player_id=pid(1), numwant=10))).peers
    assert [p.player_id for p in got.peers] == [pid(2)]
    assert (got.seeders, got.leechers) == (0, 2)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (announce(1, lib=b"short"), E.INVALID_ARGUMENT),
        (raw_announce(player_id=b"x" * 15), E.INVALID_ARGUMENT),
        (raw_announce(endpoint="udp://x:1"), E.INVALID_ARGUMENT),
        (raw_announce(endpoint="tcp://h:0"), E.INVALID_ARGUMENT),
        (raw_announce(endpoint="tcp://0.0.0.0:9"), E.INVALID_ARGUMENT),
        (announce(1, event=9), E.INVALID_ARGUMENT),
        (request(get_peers=hub_pb2.GetPeers(library_id=LIB, player_id=b"xy")), E.INVALID_ARGUMENT),
        (request(scrape=hub_pb2.Scrape()), E.INVALID_ARGUMENT),
        (request(scrape=hub_pb2.Scrape(library_ids=[LIB] * 101)), E.TOO_LARGE),
        (request(scrape=hub_pb2.Scrape(library_ids=[LIB, b"bad"])), E.INVALID_ARGUMENT),
        (report("nope"), E.INVALID_ARGUMENT),
        (report(ep(2)), E.NOT_FOUND),
        (hub_pb2.HubRequest(version=0, health=hub_pb2.Health()).SerializeToString(), E.UNSUPPORTED_VERSION),
        (hub_pb2.HubRequest(version=1, request_id=3).SerializeToString(), E.UNKNOWN_REQUEST),
        (b"\x08\x01" + b"\xfa\x01\x00", E.UNKNOWN_REQUEST),  # a body kind from the future (field 31)
        (b"", E.MALFORMED),
        (b"\xff\xff\xff", E.MALFORMED),
        (request(health=hub_pb2.Health())[:-1] + b"\x52\x05ab", E.MALFORMED),
        (b"\x0a" + b"x" * 20_000, E.TOO_LARGE),
    ],
)
def test_bad_requests_get_error_replies(body: bytes, code: int) -> None:
    logic = make_logic()
    reply = call(logic, body)
    assert error_of(reply) == code
    assert reply.error.message
    assert logic.rejected == 1
    assert call(logic, request(health=hub_pb2.Health())).health.store == "memory"


def test_a_newer_minor_version_is_answered_and_an_older_one_refused_naming_both() -> None:
    logic = make_logic()
    newer = hub_pb2.HubRequest(version=HUB.current + 1, request_id=7, health=hub_pb2.Health())
    reply = call(logic, newer.SerializeToString())
    assert reply.WhichOneof("body") == "health" and reply.version == HUB.current
    older = hub_pb2.HubRequest(version=HUB.oldest - 1, request_id=8, health=hub_pb2.Health())
    reply = call(logic, older.SerializeToString())
    assert error_of(reply) == E.UNSUPPORTED_VERSION
    assert f"version {HUB.oldest - 1} " in reply.error.message and f"speaks {HUB.current}" in reply.error.message


def test_allowlist_forbids_other_libraries() -> None:
    logic = make_logic(allowlist=frozenset({LIB}))
    assert call(logic, announce(1)).WhichOneof("body") == "announce"
    assert error_of(call(logic, announce(1, lib=OTHER_LIB))) == E.FORBIDDEN
    assert error_of(call(logic, request(scrape=hub_pb2.Scrape(library_ids=[LIB, OTHER_LIB])))) == E.FORBIDDEN


def test_libraries_per_player_are_capped() -> None:
    logic = make_logic(max_libraries_per_player=2)
    call(logic, announce(1, lib=b"1" * 32))
    call(logic, announce(1, lib=b"2" * 32))
    assert error_of(call(logic, announce(1, lib=b"3" * 32))) == E.FULL
    assert call(logic, announce(1, lib=b"2" * 32)).WhichOneof("body") == "announce"


def test_rate_limit_per_client_refills_with_time() -> None:
    logic = make_logic(rate=2.0, burst=3.0)
    health = request(health=hub_pb2.Health())
    assert [call(logic, health).WhichOneof("body") for _ in range(3)] == ["health"] * 3
    assert error_of(call(logic, health)) == E.RATE_LIMITED
    assert call(logic, health, client=b"other").WhichOneof("body") == "health"
    assert call(logic, health, now=T0 + 0.5).WhichOneof("body") == "health"


def test_new_identities_do_not_escape_the_rate_of_their_address() -> None:
    logic = make_logic(rate=2.0, burst=3.0, address_factor=2.0)  # the address: 4/s, burst 6
    health = request(health=hub_pb2.Health())
    answers = [hub_pb2.HubReply.FromString(logic.handle(bytes([n]), health, T0, "198.51.100.1")) for n in range(10)]
    assert [a.WhichOneof("body") for a in answers] == ["health"] * 6 + ["error"] * 4
    elsewhere = hub_pb2.HubReply.FromString(logic.handle(b"x", health, T0, "198.51.100.2"))
    assert elsewhere.WhichOneof("body") == "health"


@pytest.mark.parametrize(
    ("limits", "first", "then"),
    [
        ({"max_players_per_library": 2}, [announce(1), announce(2)], announce(3)),
        ({"max_entries": 2}, [announce(1), announce(2, lib=OTHER_LIB)], announce(3, lib=b"3" * 32)),
        ({"max_libraries_per_endpoint": 2},
         [announce(1, endpoint=ep(7)), announce(2, lib=OTHER_LIB, endpoint=ep(7))],
         announce(3, lib=b"3" * 32, endpoint=ep(7))),
    ],
)
def test_store_caps_answer_full_and_known_entries_still_refresh(
    limits: dict[str, int], first: list[bytes], then: bytes
) -> None:
    logic = make_logic(**limits)
    for body in first:
        assert call(logic, body).WhichOneof("body") == "announce"
    refused = call(logic, then)
    assert error_of(refused) == E.FULL
    assert call(logic, first[0], now=T0 + 30).WhichOneof("body") == "announce"  # a refresh always fits
    logic.handle(CLIENT, request(announce=hub_pb2.Announce(
        library_id=LIB, player_id=pid(1), endpoint=ep(1), event=hub_pb2.STOPPED)), T0 + 31)
    assert call(logic, then, now=T0 + 32).WhichOneof("body") == "announce"  # room again once one left


def test_refusals_are_logged_once_per_client_and_interval_with_a_count(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[dict[str, Any]] = []

    class Recorder:
        def info(self, event: str, **fields: Any) -> None:
            lines.append({"event": event, **fields})

    monkeypatch.setattr("services.hub.rejections.log", Recorder())
    logic = make_logic()
    for n in range(500):  # a new identity every time, one address
        logic.handle(bytes([n % 256, n // 256]), b"\xff garbage", T0 + n * 0.01, "198.51.100.1")
    logic.tick(T0 + 61)
    assert [(line["client"], line["count"]) for line in lines] == [("198.51.100.1", 1), ("198.51.100.1", 499)]
    assert logic.rejected == 500


def test_envelopes_are_answered_in_the_shape_they_came() -> None:
    logic = make_logic()
    health = request(health=hub_pb2.Health())
    dealer = logic.handle_frames([b"id", health], T0)
    req = logic.handle_frames([b"id", b"", health], T0)
    assert dealer is not None and req is not None
    assert len(dealer) == 2 and dealer[0] == b"id"
    assert req[:2] == [b"id", b""] and len(req) == 3
    assert logic.handle_frames([b"id"], T0) is None
    for frames, head in (([b"id", b"", health, health], 2), ([b"id", health, health], 1), ([b"id", b"", b"", b""], 2)):
        reply = logic.handle_frames(frames, T0)
        assert reply is not None and len(reply) == head + 1
        assert error_of(hub_pb2.HubReply.FromString(reply[-1])) == E.MALFORMED


def test_reports_from_any_number_of_players_never_drop_a_seed_the_hub_reached() -> None:
    logic = make_logic()
    for n in range(5):
        call(logic, announce(n))
    assert logic.take_pings() == [ep(n) for n in range(5)]  # the hub checks every new endpoint itself
    logic.ping_done(ep(0), True, T0)
    for liar in range(100, 130):  # fresh player ids join the library only to report
        call(logic, announce(liar))
        assert call(logic, report(ep(0), liar)).report.dropped is False
    logic.take_pings()
    got = call(logic, request(get_peers=hub_pb2.GetPeers(library_id=LIB, numwant=200))).peers
    assert pid(0) in [p.player_id for p in got.peers]
    assert ep(0) not in logic.take_pings()  # its good ping stands: reports cannot even make it ask again


def test_reports_queue_one_ping_and_only_its_failure_drops() -> None:
    logic = make_logic()
    for n in range(3):
        call(logic, announce(n))
    logic.take_pings()
    logic.ping_done(ep(0), False, T0)  # the probe failed: nobody is dropped for that alone
    assert call(logic, announce(9)).announce.leechers == 4
    assert logic.take_pings() == [ep(9)]
    for reporter in (1, 2, 9):
        assert call(logic, report(ep(0), reporter), now=T0 + 11).report.dropped is False
    assert logic.take_pings() == [ep(0)]
    logic.ping_done(ep(0), False, T0 + 12)
    got = call(logic, request(get_peers=hub_pb2.GetPeers(library_id=LIB)), now=T0 + 12).peers
    assert sorted(p.player_id for p in got.peers) == [pid(1), pid(2), pid(9)]


def test_the_hub_pings_only_the_address_an_announce_came_from() -> None:
    logic = make_logic()
    victim = "tcp://192.0.2.7:22"
    here = logic.handle(CLIENT, announce(1, endpoint=victim), T0, "198.51.100.1")
    reply = hub_pb2.HubReply.FromString(here)
    assert reply.announce.endpoint == victim and reply.announce.reachable == hub_pb2.REACHABILITY_UNKNOWN
    for reporter in (2, 3, 4):
        logic.handle(CLIENT, announce(reporter), T0, "198.51.100.1")
        logic.handle(CLIENT, report(victim, reporter), T0, "198.51.100.1")
    assert victim not in logic.take_pings()
    own = hub_pb2.HubReply.FromString(logic.handle(CLIENT, announce(5, endpoint="tcp://0.0.0.0:7000"), T0, "192.0.2.9"))
    assert own.announce.endpoint == "tcp://192.0.2.9:7000"
    assert logic.take_pings() == ["tcp://192.0.2.9:7000"]


def test_an_operator_may_allow_pings_into_a_network() -> None:
    logic = make_logic(ping_networks=("192.0.2.0/24",))
    logic.handle(CLIENT, announce(1, endpoint="tcp://192.0.2.7:7000"), T0, "198.51.100.1")
    logic.handle(CLIENT, announce(2, endpoint="tcp://203.0.113.7:7000"), T0, "198.51.100.1")
    assert logic.take_pings() == ["tcp://192.0.2.7:7000"]


def test_a_failed_ping_drops_and_a_good_one_holds_off_the_next() -> None:
    logic = make_logic()
    call(logic, announce(0))
    call(logic, announce(1))
    assert logic.take_pings() == [ep(0), ep(1)]
    body = report(ep(0))
    call(logic, body)
    assert logic.take_pings() == []  # joins the check under way
    logic.ping_done(ep(0), True, T0 + 1)
    call(logic, body, now=T0 + 2)
    assert logic.take_pings() == []  # cooling down
    call(logic, body, now=T0 + 100)
    assert logic.take_pings() == [ep(0)]
    logic.ping_done(ep(0), False, T0 + 101)
    got = call(logic, request(get_peers=hub_pb2.GetPeers(library_id=LIB)), now=T0 + 101).peers
    assert [p.player_id for p in got.peers] == [pid(1)]


def test_health_reports_counts_per_kind_and_uptime() -> None:
    logic = make_logic()
    call(logic, announce(1))
    call(logic, announce(2, lib=OTHER_LIB))
    call(logic, b"junk")
    health = call(logic, request(health=hub_pb2.Health()), now=T0 + 12).health
    counts = {item.kind: item.count for item in health.requests}
    assert (health.players, health.libraries, health.uptime, health.store) == (2, 2, 12.0, "memory")
    assert counts == {"announce": 2, "get_peers": 0, "scrape": 0, "report": 0, "health": 1, "announce_batch": 0,
                      "invalid": 1, "rejected": 1,
                      "rate_limited": 0}
    assert logic.counts[RequestKind.ANNOUNCE] == 2


@pytest.mark.parametrize("request_id", [0, 1, 127, 128, 16_383, 16_384, 2**35, 2**64 - 1])
def test_hand_encoded_replies_decode_with_the_generated_classes(request_id: int) -> None:
    peers = [peer_field(pid(n), ep(n), n % 2 == 0) for n in range(3)]
    announced = hub_pb2.HubReply.FromString(announce_reply(request_id, 300, 0, intervals(1800, 900), peers))
    assert (announced.version, announced.request_id) == (HUB.current, request_id)
    got = announced.announce
    assert (got.seeders, got.leechers, got.interval, got.min_interval) == (300, 0, 1800, 900)
    assert [(p.player_id, p.endpoint, p.seed) for p in got.peers] == [(pid(n), ep(n), n % 2 == 0) for n in range(3)]
    listed = hub_pb2.HubReply.FromString(peers_reply(request_id, 2, 70_000, []))
    assert listed.WhichOneof("body") == "peers" and (listed.peers.seeders, listed.peers.leechers) == (2, 70_000)


class _BrokenStore(MemoryStore):
    def refresh(self, *args: Any, **kwargs: Any) -> Any:  # every announce asks it first
        raise RuntimeError("disk on fire")


def test_an_unexpected_failure_is_answered_internal_and_the_hub_goes_on() -> None:
    logic = HubLogic(_BrokenStore(), HubLimits(rate=0), started_at=T0)
    assert error_of(call(logic, announce(1))) == E.INTERNAL
    assert call(logic, request(health=hub_pb2.Health())).WhichOneof("body") == "health"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=4))
def test_any_frames_get_a_decodable_reply_or_none(frames: list[bytes]) -> None:
    logic = make_logic()
    reply = logic.handle_frames(frames, T0)
    if reply is not None:
        hub_pb2.HubReply.FromString(reply[-1])
        assert reply[0] == frames[0]


# --- where players are reached, and whether the hub can reach them ---------------------------------------


def wildcard_announce(n: int) -> bytes:
    body = hub_pb2.Announce(library_id=LIB, player_id=pid(n), endpoint="tcp://0.0.0.0:7000", left=100,
                            event=hub_pb2.STARTED)
    return request(announce=body)


def test_a_wildcard_announce_is_recorded_at_the_address_it_came_from() -> None:
    logic = make_logic()
    reply = hub_pb2.HubReply.FromString(logic.handle(CLIENT, wildcard_announce(1), T0, "10.2.0.7"))
    assert reply.announce.endpoint == "tcp://10.2.0.7:7000"
    got = hub_pb2.HubReply.FromString(logic.handle(b"other", request(get_peers=hub_pb2.GetPeers(library_id=LIB)),
                                                   T0, "10.2.0.8")).peers
    assert [p.endpoint for p in got.peers] == ["tcp://10.2.0.7:7000"]


def test_a_player_on_the_hubs_host_is_handed_to_remote_players_at_the_hubs_address() -> None:
    logic = HubLogic(MemoryStore(), HubLimits(rate=0), started_at=T0, local_address=lambda requester: "10.2.0.1")
    logic.handle(CLIENT, wildcard_announce(1), T0, "127.0.0.1")
    ask = request(get_peers=hub_pb2.GetPeers(library_id=LIB))
    remote = hub_pb2.HubReply.FromString(logic.handle(b"r", ask, T0, "10.2.0.8")).peers
    local = hub_pb2.HubReply.FromString(logic.handle(b"l", ask, T0, "127.0.0.1")).peers
    assert [p.endpoint for p in remote.peers] == ["tcp://10.2.0.1:7000"]
    assert [p.endpoint for p in local.peers] == ["tcp://127.0.0.1:7000"]


def test_announce_replies_say_whether_the_hub_could_connect_and_a_failed_check_drops_nobody() -> None:
    logic = make_logic()

    def reachable(now: float) -> int:
        return call(logic, announce(0, event=hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED), now=now).announce.reachable

    assert reachable(T0) == hub_pb2.REACHABILITY_UNKNOWN
    assert logic.take_pings() == [ep(0)]
    logic.ping_done(ep(0), False, T0 + 1)
    assert reachable(T0 + 2) == hub_pb2.UNREACHABLE
    assert call(logic, announce(1)).announce.leechers == 2  # still handed out: nobody reported it
    assert logic.take_pings() == [ep(1)]
    assert reachable(T0 + 30) == hub_pb2.UNREACHABLE  # checked again soon, in case the port was opened
    assert logic.take_pings() == [ep(0)]
    logic.ping_done(ep(0), True, T0 + 31)
    assert reachable(T0 + 32) == hub_pb2.REACHABLE


class _CountingStore(MemoryStore):
    """Counts refresh_many calls; fails them when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.fail = False

    def refresh_many(self, asks: Any, now: float, rng: random.Random) -> Any:
        self.batches.append(len(asks))
        if self.fail:
            raise StoreUnavailable("Redis is unreachable (test)")
        return super().refresh_many(asks, now, rng)


def test_a_batch_is_answered_in_order_with_one_refresh_for_its_announces() -> None:
    store = _CountingStore()
    logic = HubLogic(store, HubLimits(rate=0), started_at=T0, rng=random.Random(5))
    for n in (1, 2):
        call(logic, announce(n))
    store.batches.clear()
    periodic = hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED
    messages = [
        ([b"a", announce(1, event=periodic)], ""),
        ([b"b"], ""),  # no body: no reply
        ([b"c", b"", request(get_peers=hub_pb2.GetPeers(library_id=LIB))], ""),
        ([b"d", announce(3, event=periodic)], ""),  # new: the full path after the batch's refresh
        ([b"e", announce(2, event=periodic)], ""),
        ([b"f", b"x", b"y"], ""),
    ]
    replies = logic.handle_batch(messages, T0 + 1)
    assert store.batches == [3]  # one refresh call for the three announces
    assert replies[1] is None
    kinds = [hub_pb2.HubReply.FromString(r[-1]).WhichOneof("body") if r else None for r in replies]
    assert kinds == ["announce", None, "peers", "announce", "announce", "error"]
    answered = [r for r in replies if r is not None]
    assert [r[0] for r in answered] == [b"a", b"c", b"d", b"e", b"f"] and answered[1][1] == b""
    assert hub_pb2.HubReply.FromString(answered[2][-1]).announce.leechers == 3


def test_a_failed_batch_refresh_answers_its_announces_unavailable_and_the_rest_normally() -> None:
    store = _CountingStore()
    logic = HubLogic(store, HubLimits(rate=0), started_at=T0, rng=random.Random(5))
    call(logic, announce(1))
    store.fail = True
    replies = logic.handle_batch([([b"a", announce(1, event=hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED)], ""),
                                  ([b"b", request(get_peers=hub_pb2.GetPeers(library_id=LIB))], "")], T0 + 1)
    first, second = (hub_pb2.HubReply.FromString(r[-1]) for r in replies if r)
    assert first.error.code == E.UNAVAILABLE
    assert second.WhichOneof("body") == "peers"  # answered before the batch's refresh failed
    assert logic.store_down and logic.unavailable == 1
