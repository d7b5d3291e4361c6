"""The real hub broker on 127.0.0.1 with real ZMQ clients (DEALER and REQ)."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from services.hub.model import HubLimits
from services.hub.store_memory import MemoryStore
from services.wire.curve import KeyPair, connect_curve
from services.wire.pb import common_pb2, hub_pb2
from tests.contract.conftest import FakeClock, RunningHub, dropped_by_peer, hub_request, recv, wait_for

LIB = bytes(range(32))
E = common_pb2.ErrorCode
Sockets = Callable[..., zmq.Socket[bytes]]


def pid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def ep(n: int) -> str:
    return f"tcp://10.2.{n // 250}.{n % 250 + 1}:6881"


def announce_body(n: int, *, lib: bytes = LIB, endpoint: str = "", **more: Any) -> Any:
    fields = {"event": hub_pb2.STARTED, "left": 10, **more}
    return hub_pb2.Announce(library_id=lib, player_id=pid(n), endpoint=endpoint or ep(n), **fields)


def ask(sock: zmq.Socket[bytes], body: bytes, *, delimiter: bool = False) -> hub_pb2.HubReply:
    """Send one request (DEALER or REQ) and parse the reply, checking the envelope shape."""
    if sock.type == zmq.REQ:
        sock.send(body)
        frames = recv(sock)
    else:
        sock.send_multipart([b"", body] if delimiter else [body])
        frames = recv(sock)
        assert len(frames) == (2 if delimiter else 1), frames
        assert not delimiter or frames[0] == b""
    return hub_pb2.HubReply.FromString(frames[-1])


def report_body(reporter: int, endpoint: str) -> Any:
    return hub_pb2.ReportUnreachable(library_id=LIB, reporter_id=pid(reporter), endpoint=endpoint)


def error_code(reply: hub_pb2.HubReply) -> int:
    assert reply.WhichOneof("body") == "error", reply
    assert reply.error.message
    return reply.error.code


@pytest.fixture(params=["dealer", "dealer+delimiter", "req"])
def client(request: pytest.FixtureRequest, hub: RunningHub, sockets: Sockets) -> Iterator[Callable[[bytes], Any]]:
    kind = zmq.REQ if request.param == "req" else zmq.DEALER
    sock = sockets(kind, hub.endpoint)
    yield lambda body: ask(sock, body, delimiter=request.param == "dealer+delimiter")


def test_every_request_kind_over_every_client_kind(client: Callable[[bytes], hub_pb2.HubReply]) -> None:
    first = client(hub_request(7, announce=announce_body(1)))
    assert first.request_id == 7 and first.announce.leechers == 1 and first.announce.interval == 60
    second = client(hub_request(8, announce=announce_body(2, numwant=5)))
    assert [p.player_id for p in second.announce.peers] == [pid(1)]
    peers = client(hub_request(9, get_peers=hub_pb2.GetPeers(library_id=LIB, player_id=pid(2)))).peers
    assert [(p.player_id, p.endpoint, p.seed) for p in peers.peers] == [(pid(1), ep(1), False)]
    scrape = client(hub_request(10, scrape=hub_pb2.Scrape(library_ids=[LIB, b"z" * 32]))).scrape
    assert [(s.leechers, s.completed) for s in scrape.libraries] == [(2, 0), (0, 0)]
    report = client(hub_request(11, report=report_body(2, ep(1))))
    assert report.WhichOneof("body") == "report" and report.report.dropped is False
    stopped = client(hub_request(12, announce=announce_body(1, event=hub_pb2.STOPPED)))
    assert stopped.announce.leechers == 1
    health = client(hub_request(13, health=hub_pb2.Health())).health
    counts = {item.kind: item.count for item in health.requests}
    assert (health.players, health.libraries, health.store) == (1, 1, "memory")
    assert counts["announce"] == 3 and counts["get_peers"] == 1 and counts["scrape"] == 1 and counts["report"] == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\x00\x01garbage", E.MALFORMED),
        (b"", E.MALFORMED),
        (hub_request(health=hub_pb2.Health())[:-1] + b"\x72\x09", E.MALFORMED),  # truncated
        (hub_request(version=0, health=hub_pb2.Health()), E.UNSUPPORTED_VERSION),
        (hub_request(), E.UNKNOWN_REQUEST),
        (hub_request(announce=announce_body(1, lib=b"short")), E.INVALID_ARGUMENT),
        (hub_request(announce=announce_body(1, endpoint="tcp://[::]:70000")), E.INVALID_ARGUMENT),
        (hub_request(scrape=hub_pb2.Scrape(library_ids=[LIB] * 500)), E.TOO_LARGE),
        (b"\x0a" + b"\x00" * 17_000, E.TOO_LARGE),
        (hub_request(report=report_body(5, ep(1))), E.NOT_FOUND),
    ],
)
def test_errors_are_replies_and_the_hub_keeps_serving(
    hub: RunningHub, sockets: Sockets, body: bytes, code: int
) -> None:
    sock = sockets(zmq.DEALER, hub.endpoint)
    assert error_code(ask(sock, body)) == code
    assert ask(sock, hub_request(health=hub_pb2.Health())).WhichOneof("body") == "health"


def test_allowlist_is_enforced(hubs: Callable[..., RunningHub], sockets: Sockets) -> None:
    hub = hubs(limits=HubLimits(allowlist=frozenset({LIB})))
    sock = sockets(zmq.DEALER, hub.endpoint)
    assert error_code(ask(sock, hub_request(announce=announce_body(1, lib=b"x" * 32)))) == E.FORBIDDEN
    assert ask(sock, hub_request(announce=announce_body(1))).WhichOneof("body") == "announce"


def test_rate_limit_is_per_client(hubs: Callable[..., RunningHub], sockets: Sockets) -> None:
    hub = hubs(limits=HubLimits(rate=1.0, burst=2.0))
    noisy = sockets(zmq.DEALER, hub.endpoint)
    quiet = sockets(zmq.DEALER, hub.endpoint)
    health = hub_request(health=hub_pb2.Health())
    assert [ask(noisy, health).WhichOneof("body") for _ in range(2)] == ["health", "health"]
    assert error_code(ask(noisy, health)) == E.RATE_LIMITED
    assert ask(quiet, health).WhichOneof("body") == "health"


def test_libraries_per_player_are_capped(hubs: Callable[..., RunningHub], sockets: Sockets) -> None:
    hub = hubs(limits=HubLimits(max_libraries_per_player=1))
    sock = sockets(zmq.DEALER, hub.endpoint)
    ask(sock, hub_request(announce=announce_body(1)))
    assert error_code(ask(sock, hub_request(announce=announce_body(1, lib=b"y" * 32)))) == E.FULL


class _FailingStore(MemoryStore):
    def refresh(self, *args: Any, **kwargs: Any) -> Any:  # every announce asks it first
        raise OSError("simulated disk failure")


def test_an_internal_failure_is_an_internal_error_reply(hubs: Callable[..., RunningHub], sockets: Sockets) -> None:
    hub = hubs(store=_FailingStore())
    sock = sockets(zmq.DEALER, hub.endpoint)
    assert error_code(ask(sock, hub_request(announce=announce_body(1)))) == E.INTERNAL
    health = ask(sock, hub_request(health=hub_pb2.Health())).health  # the hub goes on
    assert {r.kind: r.count for r in health.requests}["rejected"] == 1


def test_garbage_of_every_shape_leaves_the_hub_serving(hub: RunningHub, sockets: Sockets) -> None:
    dealer = sockets(zmq.DEALER, hub.endpoint)
    rng = random.Random(1234)
    for _ in range(50):
        dealer.send(rng.randbytes(rng.randrange(1, 300)))
        assert hub_pb2.HubReply.FromString(recv(dealer)[-1]).request_id >= 0
    shapes = [([b""], 1), ([b"", b""], 2), ([b"a", b"b"], 1), ([b"", b"a", b"b"], 2), ([b"", b"", b"", b""], 2)]
    for frames, reply_frames in shapes:
        dealer.send_multipart(frames)
        reply = recv(dealer)
        assert len(reply) == reply_frames
        assert hub_pb2.HubReply.FromString(reply[-1]).WhichOneof("body") == "error"
    req = sockets(zmq.REQ, hub.endpoint)
    req.send_multipart([b"one", b"two"])
    assert error_code(hub_pb2.HubReply.FromString(recv(req)[-1])) == E.MALFORMED
    oversized = sockets(zmq.DEALER, hub.endpoint)
    dropped_by_peer(oversized, [b"\x0a" + b"x" * (hub.logic.limits.max_message_bytes + 10)])  # zmq.MAXMSGSIZE
    fresh = sockets(zmq.DEALER, hub.endpoint)
    assert ask(fresh, hub_request(health=hub_pb2.Health())).WhichOneof("body") == "health"
    assert ask(dealer, hub_request(health=hub_pb2.Health())).WhichOneof("body") == "health"


def test_hundred_concurrent_clients_see_a_consistent_view(hub: RunningHub, sockets: Sockets) -> None:
    clients = [sockets(zmq.DEALER, hub.endpoint) for _ in range(100)]
    for n, sock in enumerate(clients):
        sock.send(hub_request(n, announce=announce_body(n, numwant=200)))
    for n, sock in enumerate(clients):
        reply = hub_pb2.HubReply.FromString(recv(sock)[-1])
        assert reply.request_id == n and reply.WhichOneof("body") == "announce"
        assert pid(n) not in {p.player_id for p in reply.announce.peers}
    for n, sock in enumerate(clients):
        sock.send(hub_request(n, get_peers=hub_pb2.GetPeers(library_id=LIB, player_id=pid(n), numwant=200)))
    everyone = {pid(n) for n in range(100)}
    for n, sock in enumerate(clients):
        peers = hub_pb2.HubReply.FromString(recv(sock)[-1]).peers
        assert {p.player_id for p in peers.peers} == everyone - {pid(n)}
        assert (peers.seeders, peers.leechers) == (0, 100)
    assert ask(clients[0], hub_request(health=hub_pb2.Health())).health.players == 100


def test_players_expire_on_the_hub_clock(hub: RunningHub, clock: FakeClock, sockets: Sockets) -> None:
    sock = sockets(zmq.DEALER, hub.endpoint)
    ask(sock, hub_request(announce=announce_body(1)))
    clock.advance(100)
    ask(sock, hub_request(announce=announce_body(2)))
    clock.advance(20)  # player 1 is now 120 s (two intervals) old
    peers = ask(sock, hub_request(get_peers=hub_pb2.GetPeers(library_id=LIB))).peers
    assert [p.player_id for p in peers.peers] == [pid(2)]
    clock.advance(100)
    assert ask(sock, hub_request(health=hub_pb2.Health())).health.players == 0


def test_sqlite_hub_keeps_players_across_a_restart(
    hubs: Callable[..., RunningHub], clock: FakeClock, sockets: Sockets, tmp_path: Path
) -> None:
    db = tmp_path / "hub.db"
    first = hubs(store="sqlite", db=db, clock=clock)
    sock = sockets(zmq.DEALER, first.endpoint)
    for n in range(3):
        ask(sock, hub_request(announce=announce_body(n)))
    ask(sock, hub_request(announce=announce_body(0, event=hub_pb2.COMPLETED, left=0)))
    first.stop()
    clock.advance(60)
    second = hubs(store="sqlite", db=db, clock=clock)
    sock = sockets(zmq.DEALER, second.endpoint)
    scrape = ask(sock, hub_request(scrape=hub_pb2.Scrape(library_ids=[LIB]))).scrape.libraries[0]
    assert (scrape.seeders, scrape.leechers, scrape.completed) == (1, 2, 1)
    clock.advance(60)  # 120 s after the announces: expired at their stored time
    assert ask(sock, hub_request(health=hub_pb2.Health())).health.players == 0


def _closed_port() -> socket.socket:
    """A TCP socket bound but not listening: connecting to its port is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_an_endpoint_that_fails_the_hub_ping_is_dropped(hub: RunningHub, sockets: Sockets) -> None:
    with _closed_port() as dead:
        dead_ep = f"tcp://127.0.0.1:{dead.getsockname()[1]}"
        sock = sockets(zmq.DEALER, hub.endpoint)
        ask(sock, hub_request(announce=announce_body(1, endpoint=dead_ep)))
        ask(sock, hub_request(announce=announce_body(2)))
        report = report_body(2, dead_ep)
        assert ask(sock, hub_request(report=report)).report.dropped is False

        def gone() -> bool:
            return ask(sock, hub_request(health=hub_pb2.Health())).health.players == 1

        wait_for(gone, what="the hub's ping to drop the dead endpoint")


def test_an_endpoint_that_answers_the_hub_ping_stays(hub: RunningHub, sockets: Sockets) -> None:
    with socket.create_server(("127.0.0.1", 0)) as alive:
        alive_ep = f"tcp://127.0.0.1:{alive.getsockname()[1]}"
        sock = sockets(zmq.DEALER, hub.endpoint)
        ask(sock, hub_request(announce=announce_body(1, endpoint=alive_ep)))
        ask(sock, hub_request(announce=announce_body(2)))
        report = report_body(2, alive_ep)
        ask(sock, hub_request(report=report))
        wait_for(lambda: hub.logic.unreachable.pending_pings == 0, what="the ping result")
        assert ask(sock, hub_request(health=hub_pb2.Health())).health.players == 2


def test_the_hub_subprocess_serves_and_exits_cleanly_on_sigterm(
    spawn_hub: Callable[..., Any], sockets: Sockets
) -> None:
    started = spawn_hub("--bind", "tcp://127.0.0.1:0", "--store", "memory", clear=False)
    assert started.endpoint.startswith("tcp://127.0.0.1:") and len(started.key) == 40
    sock = sockets(zmq.REQ)
    connect_curve(sock, KeyPair.generate(), started.key)
    sock.connect(started.endpoint)
    assert ask(sock, hub_request(health=hub_pb2.Health())).health.store == "memory"
    started.proc.terminate()
    assert started.proc.wait(10) == 0


def test_emma_hub_serves_and_stops_on_ctrl_c(spawn_hub: Callable[..., Any], sockets: Sockets) -> None:
    started = spawn_hub("--bind", "tcp://127.0.0.1:0", "--store", "memory", "--interval", "5", cli=True)
    sock = sockets(zmq.DEALER, started.endpoint)
    reply = ask(sock, hub_request(announce=announce_body(1)))
    assert reply.announce.interval == 5
    started.proc.send_signal(signal.SIGINT)
    assert started.proc.wait(10) == 0


def test_emma_hub_says_why_it_cannot_listen(sockets: Sockets, tmp_path: Path) -> None:
    taken = sockets(zmq.ROUTER)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    cmd = [sys.executable, "-m", "services.cli.app", "--data-dir", str(tmp_path), "hub", "--bind", f"tcp://127.0.0.1:{port}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "cannot listen on" in done.stderr and "choose another --bind" in done.stderr

