"""HubClient against real hubs: results, errors, retries and failover."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from services.hub.client import (
    AnnounceEvent,
    HubClient,
    HubClientError,
    HubError,
    HubUnavailable,
    LibraryStats,
    PeerInfo,
)
from services.hub.client_types import Reachability
from services.hub.model import HubLimits
from services.wire.pb import common_pb2
from tests.contract.conftest import RunningHub, wait_for

LIB = b"\x01" * 32
ME = b"\x02" * 16
YOU = b"\x03" * 16
ME_AT = "tcp://10.0.0.2:6881"
YOU_AT = "tcp://10.0.0.3:6881"
Clients = Callable[..., HubClient]


@pytest.fixture
def clients(ctx: zmq.Context[zmq.Socket[bytes]]) -> Iterator[Clients]:
    made: list[HubClient] = []

    def make(endpoints: str | list[str], **options: Any) -> HubClient:
        client = HubClient(endpoints, context=ctx, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_every_call_returns_plain_values(hub: RunningHub, clients: Clients) -> None:
    client = clients(hub.endpoint)
    first = client.announce(LIB, ME, ME_AT, AnnounceEvent.STARTED, left=100)
    assert (first.peers, first.seeders, first.leechers, first.interval, first.min_interval) == ((), 0, 1, 60, 30)
    second = client.announce(LIB, YOU, YOU_AT, AnnounceEvent.STARTED, left=0)
    assert second.peers == (PeerInfo(ME, ME_AT, False),)
    peers = client.get_peers(LIB, ME)
    assert (peers.peers, peers.seeders, peers.leechers) == ((PeerInfo(YOU, YOU_AT, True),), 1, 1)
    client.announce(LIB, ME, ME_AT, AnnounceEvent.COMPLETED, left=0)
    assert client.scrape([LIB]) == [LibraryStats(LIB, 2, 0, 1)]
    assert client.report_unreachable(LIB, ME, YOU_AT) is False
    client.announce(LIB, ME, ME_AT, AnnounceEvent.STOPPED)
    health = client.health()
    assert (health.players, health.libraries, health.store) == (1, 1, "memory")
    assert health.requests["announce"] == 4 and health.requests["rejected"] == 0


def test_a_refusal_raises_hub_error_with_its_code(hub: RunningHub, clients: Clients) -> None:
    client = clients(hub.endpoint)
    with pytest.raises(HubError) as caught:
        client.announce(b"short", ME, ME_AT)
    assert caught.value.code == common_pb2.INVALID_ARGUMENT
    assert caught.value.code_name == "INVALID_ARGUMENT" and not caught.value.retryable
    assert "library_id" in str(caught.value)
    assert client.health().players == 0  # the client is still usable


def test_rate_limited_is_a_retryable_hub_error(hubs: Callable[..., RunningHub], clients: Clients) -> None:
    hub = hubs(limits=HubLimits(rate=1.0, burst=1.0))
    client = clients(hub.endpoint)
    client.health()
    with pytest.raises(HubError) as caught:
        client.health()
    assert caught.value.code == common_pb2.RATE_LIMITED and caught.value.retryable


def test_fails_over_from_a_silent_hub_and_sticks_to_the_live_one(
    hub: RunningHub, clients: Clients, sockets: Callable[..., zmq.Socket[bytes]]
) -> None:
    silent = sockets(zmq.ROUTER)
    silent_port = silent.bind_to_random_port("tcp://127.0.0.1")
    silent_ep = f"tcp://127.0.0.1:{silent_port}"
    client = clients([silent_ep, hub.endpoint], timeout=2.0, shuffle=False)  # the live hub's answer has time
    assert client.health().store == "memory"
    assert client.endpoint == hub.endpoint
    assert client.timeouts == 1
    client.health()
    assert client.timeouts == 1


def test_no_hub_at_all_raises_hub_unavailable_after_its_attempts(
    clients: Clients, sockets: Callable[..., zmq.Socket[bytes]]
) -> None:
    silent = sockets(zmq.ROUTER)
    silent_ep = f"tcp://127.0.0.1:{silent.bind_to_random_port('tcp://127.0.0.1')}"
    client = clients([silent_ep], timeout=0.1, attempts=3)
    with pytest.raises(HubUnavailable) as caught:  # it gives up, whatever the machine's speed: attempts bound it
        client.health()
    assert caught.value.tried == [silent_ep] * 3
    assert "check that a hub runs" in str(caught.value)


def test_retries_reach_a_hub_that_starts_late(
    hubs: Callable[..., RunningHub], clients: Clients, tmp_path: Path
) -> None:
    endpoint = f"ipc://{tmp_path / 'late-hub.sock'}"
    client = clients(endpoint, timeout=0.5, attempts=120)
    starter = threading.Thread(target=lambda: _start_when(lambda: client.timeouts >= 1, hubs, endpoint))
    starter.start()
    try:
        assert client.health().store == "memory"
    finally:
        starter.join(10)
    assert client.timeouts >= 1


def _start_when(ready: Callable[[], bool], hubs: Callable[..., RunningHub], endpoint: str) -> None:
    deadline = time.monotonic() + 10
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    hubs(bind=endpoint)


def test_a_closed_client_refuses_calls_and_closes_twice_quietly(hub: RunningHub) -> None:
    client = HubClient(hub.endpoint)
    assert client.health().players == 0
    client.close()
    client.close()
    with pytest.raises(HubClientError, match="closed"):
        client.health()


def test_many_threads_each_with_a_client_share_one_hub(hub: RunningHub, clients: Clients) -> None:
    players = [bytes([n]) * 16 for n in range(1, 21)]
    mine = [clients(hub.endpoint) for _ in players]
    errors: list[BaseException] = []

    def run(client: HubClient, player: bytes) -> None:
        try:
            for _ in range(5):
                client.announce(LIB, player, f"tcp://10.9.0.{player[0]}:6881", AnnounceEvent.STARTED, left=1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(mine, players, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert mine[0].get_peers(LIB, numwant=200).leechers == 20


def test_a_wildcard_endpoint_is_recorded_where_the_announce_came_from_and_checked(hub: RunningHub,
                                                                                   clients: Clients) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        client = clients(hub.endpoint)
        first = client.announce(LIB, ME, f"tcp://0.0.0.0:{port}", AnnounceEvent.STARTED, left=100)
        assert first.endpoint == f"tcp://127.0.0.1:{port}"
        assert first.reachable is Reachability.UNKNOWN
        other = client.announce(LIB, YOU, YOU_AT, AnnounceEvent.STARTED, left=0)
        assert other.peers == (PeerInfo(ME, f"tcp://127.0.0.1:{port}", False),)

        def verdict() -> Reachability:
            return client.announce(LIB, ME, f"tcp://0.0.0.0:{port}", left=100).reachable

        wait_for(lambda: verdict() is Reachability.REACHABLE, timeout=30, what="the hub's own check")


def test_a_drop_the_client_has_since_reconnected_from_is_not_a_failure(
    hubs: Callable[..., RunningHub], clients: Clients
) -> None:
    first, spare = hubs(), hubs()
    client = clients([first.endpoint, spare.endpoint], shuffle=False)
    client.health()
    first.stop()  # the client's connection drops while it is idle ...
    again = hubs(bind=first.endpoint)  # ... and libzmq reconnects it to a hub back on the same port
    wait_for(lambda: again.broker.gate.admission.live >= 1, what="the client to reconnect")
    client.health()
    assert client.endpoint == first.endpoint and list(client.failures) == []
