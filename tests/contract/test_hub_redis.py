"""Hubs sharing one real Redis: the same answers from every hub, reports and pings counted once,
per-address limits over all hubs, Redis trouble answered UNAVAILABLE, and clients that fail over."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from services.hub.client import HubClient, HubError
from services.hub.logic import STORE_RETRY, HubLogic
from services.hub.model import HubLimits
from services.hub.store import open_store
from services.hub.store_errors import StoreError
from services.hub.store_redis import RedisStore
from services.wire.pb import common_pb2, hub_pb2
from tests.contract.conftest import ROOT, T0, HubProcess, RunningHub
from tools.redis_server import RedisServer, free_port

LIB = b"R" * 32
OTHER = b"S" * 32
HERE = "127.0.0.1"


def pid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def ep(n: int) -> str:
    return f"tcp://127.0.0.1:{20000 + n}"


def request(**body: Any) -> bytes:
    return hub_pb2.HubRequest(version=1, request_id=7, **body).SerializeToString()


def announce(n: int, lib: bytes = LIB, event: hub_pb2.AnnounceEvent.ValueType = hub_pb2.STARTED) -> bytes:
    return request(announce=hub_pb2.Announce(library_id=lib, player_id=pid(n), endpoint=ep(n), left=10, event=event))


def report(endpoint: str, reporter: int, lib: bytes = LIB) -> bytes:
    return request(report=hub_pb2.ReportUnreachable(library_id=lib, reporter_id=pid(reporter), endpoint=endpoint))


def get_peers(lib: bytes = LIB) -> bytes:
    return request(get_peers=hub_pb2.GetPeers(library_id=lib, numwant=50))


@pytest.fixture
def logics(redis_server: RedisServer) -> Iterator[Callable[..., HubLogic]]:
    """HubLogic objects (no sockets) each on a store of its own, all on one Redis."""
    stores: list[RedisStore] = []

    def make(**limits: Any) -> HubLogic:
        store = RedisStore.open(None, T0, url=redis_server.url)
        stores.append(store)
        return HubLogic(store, replace(HubLimits(rate=0), **limits), started_at=T0, rng=random.Random(len(stores)))

    yield make
    for store in stores:
        store.close()


def call(logic: HubLogic, body: bytes, now: float = T0, source: str = HERE, client: bytes = b"c") -> hub_pb2.HubReply:
    return hub_pb2.HubReply.FromString(logic.handle(client, body, now, source))


def test_an_announce_to_one_hub_is_in_the_others_peers_and_scrape_at_once(
    redis_server: RedisServer, spawn_hub: Callable[..., HubProcess]
) -> None:
    store = ("--store", "redis", "--redis", redis_server.url, "--bind", "tcp://127.0.0.1:0")
    first, second = spawn_hub(*store), spawn_hub(*store)
    with HubClient(first.endpoint, shuffle=False) as a, HubClient(second.endpoint, shuffle=False) as b:
        a.announce(LIB, pid(1), ep(1), left=0)
        got = b.get_peers(LIB, numwant=10)
        assert [(p.player_id, p.seed) for p in got.peers] == [(pid(1), True)]
        b.announce(LIB, pid(2), ep(2), left=5)
        assert [(s.seeders, s.leechers) for s in a.scrape([LIB])] == [(1, 1)]
        assert a.health().players == b.health().players == 2


def test_a_report_to_each_hub_makes_one_ping_and_its_failure_drops_everywhere(
    logics: Callable[..., HubLogic],
) -> None:
    a, b = logics(), logics()
    call(a, announce(1))  # the player reported on announced to hub A, from its own address
    call(a, announce(1, lib=OTHER))
    a.take_pings()  # A's own probe of the new endpoint; answered, it holds
    a.ping_done(ep(1), True, T0)
    for reporter in (2, 3):
        call(b, announce(reporter))
        call(b, announce(reporter, lib=OTHER))
    assert b.take_pings() == [ep(2), ep(3)]
    later = T0 + 100  # past the good verdict's cooldown
    call(a, report(ep(1), 2), now=later)
    call(b, report(ep(1), 3, lib=OTHER), now=later)
    call(b, report(ep(1), 2), now=later)
    assert a.take_pings() == [ep(1)] and b.take_pings() == []  # one ping for all three reports
    a.ping_done(ep(1), False, later)
    for hub in (a, b):
        for lib in (LIB, OTHER):
            peers = call(hub, get_peers(lib), now=later).peers.peers
            assert sorted(p.player_id for p in peers) == [pid(2), pid(3)]


def test_a_verdict_one_hub_found_is_read_by_the_other(logics: Callable[..., HubLogic]) -> None:
    a, b = logics(), logics()
    call(a, announce(1))
    assert a.take_pings() == [ep(1)]
    a.ping_done(ep(1), True, T0)
    reply = call(b, announce(1, event=hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED), now=T0 + 1)  # it moved to hub B
    assert reply.announce.reachable == hub_pb2.REACHABLE
    assert b.take_pings() == []


def test_an_address_over_its_rate_over_all_hubs_is_refused_by_each(logics: Callable[..., HubLogic]) -> None:
    a, b = logics(rate=10, burst=10, address_factor=2), logics(rate=10, burst=10, address_factor=2)
    now = T0 + 0.1
    for n in range(15):  # under each hub's own burst of 20, over the 20 a second both allow together
        assert call(a, get_peers(), now=now, client=b"%d" % n).WhichOneof("body") == "peers"
        assert call(b, get_peers(), now=now, client=b"%d" % n).WhichOneof("body") == "peers"
    a.tick(now)
    b.tick(now)
    assert call(b, get_peers(), now=now, client=b"x").error.code == common_pb2.RATE_LIMITED
    call(a, get_peers(), now=now + 0.3, client=b"y")
    a.tick(now + 0.3)
    assert call(a, get_peers(), now=now + 0.3, client=b"z").error.code == common_pb2.RATE_LIMITED
    assert call(a, get_peers(), now=now, source="10.9.9.9").WhichOneof("body") == "peers"  # others are not
    assert call(a, get_peers(), now=T0 + 1.5, client=b"w").WhichOneof("body") == "peers"  # a new second


def test_a_lost_redis_is_answered_unavailable_logged_once_and_recovered_from(
    logics: Callable[..., HubLogic], redis_server: RedisServer
) -> None:
    hub = logics()
    call(hub, announce(1))
    redis_server.stop()
    with capture_logs() as logs:
        for n in range(5):
            reply = call(hub, announce(1, event=hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED), now=T0 + n * 0.5)
            assert reply.error.code == common_pb2.UNAVAILABLE
            hub.tick(T0 + n * 0.5)
        assert [e["event"] for e in logs if e["event"].startswith("store_")] == ["store_unavailable"]
        redis_server.start()  # empty: the player's next announce puts it back
        later = T0 + 2 + STORE_RETRY
        reply = call(hub, announce(1, event=hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED), now=later)
        assert reply.WhichOneof("body") == "announce" and reply.announce.leechers == 1
        assert [e["event"] for e in logs if e["event"].startswith("store_")] == ["store_unavailable",
                                                                                 "store_available"]
    assert hub.unavailable == 5


def test_a_client_leaves_a_hub_without_redis_and_a_stopped_hub_at_once(
    redis_server: RedisServer, hubs: Callable[..., RunningHub]
) -> None:
    cut_off = hubs(store=open_store("redis", None, T0, url=redis_server.url))
    healthy = hubs()
    spare = hubs()
    redis_server.stop()
    client = HubClient([cut_off.endpoint, healthy.endpoint, spare.endpoint], timeout=60.0, shuffle=False)
    try:
        client.announce(LIB, pid(1), ep(1), left=3)
        assert client.endpoint == healthy.endpoint and list(client.failures) == ["unavailable"]
        healthy.stop()
        client.announce(LIB, pid(1), ep(1), left=3)  # no attempt waited for its 60 s timeout
        assert client.endpoint == spare.endpoint
        assert list(client.failures) == ["unavailable", "connection lost", "unavailable"]
    finally:
        client.close()


def test_one_hub_alone_reports_unavailable_to_its_caller(
    redis_server: RedisServer, hubs: Callable[..., RunningHub]
) -> None:
    hub = hubs(store=open_store("redis", None, T0, url=redis_server.url))
    redis_server.stop()
    with HubClient(hub.endpoint) as client, pytest.raises(HubError) as caught:
        client.announce(LIB, pid(1), ep(1))
    assert caught.value.code == common_pb2.UNAVAILABLE and caught.value.retryable


@pytest.mark.parametrize(("args", "says"), [
    (("--store", "redis", "--redis", "URL"), "cannot reach Redis at redis://127.0.0.1:"),
    (("--store", "redis"), "--store redis needs --redis redis://HOST:PORT/0"),
    (("--store", "sqlite", "--redis", "URL"), "--redis is for --store redis"),
    (("--store", "redis", "--redis", "http://nowhere"), "write it as redis://HOST:PORT/0"),
])
def test_a_hub_that_cannot_use_its_redis_says_why_and_does_not_start(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    cmd = [sys.executable, "-m", "services.hub", "--data-dir", str(tmp_path), "--bind", "tcp://127.0.0.1:0",
           *(url if arg == "URL" else arg for arg in args)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "listening" not in done.stdout
    assert says in done.stderr


def test_a_redis_password_is_never_printed() -> None:
    url = f"redis://admin:hunter2@127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreError) as caught:
        open_store("redis", None, T0, url=url)
    assert "hunter2" not in str(caught.value) and "admin:***@127.0.0.1" in str(caught.value)
