"""Connection caps at the handshake: a real hub refuses the connections past its cap per address."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from services.hub.model import HubLimits
from services.wire import curve
from services.wire.admission import Admission, Gate
from services.wire.curve import KeyPair, connect_curve
from services.wire.pb import hub_pb2
from tests.contract.conftest import RunningHub, hub_request, recv, wait_for

Sockets = Callable[..., zmq.Socket[bytes]]
HEALTH = hub_request(health=hub_pb2.Health())


def wait_event(monitor: zmq.Socket[bytes], wanted: int) -> None:
    """Read monitor events until ``wanted`` arrives (the test's timeout bounds the wait)."""
    while recv_monitor_message(monitor)["event"] != wanted:
        pass


def test_connections_past_the_cap_per_address_are_refused_until_one_closes(
    hubs: Callable[..., RunningHub], sockets: Sockets
) -> None:
    hub = hubs(limits=HubLimits(connections_per_address=2, rate=0))
    admitted = [sockets(zmq.DEALER, hub.endpoint) for _ in range(2)]
    for sock in admitted:
        sock.send(HEALTH)
        assert hub_pb2.HubReply.FromString(recv(sock)[-1]).WhichOneof("body") == "health"
    refused = sockets(zmq.DEALER)
    monitor = refused.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    refused.connect(hub.endpoint)
    refused.send(HEALTH)
    wait_event(monitor, zmq.EVENT_HANDSHAKE_FAILED_AUTH)  # refused at the handshake, not merely slow
    refused.disable_monitor()
    monitor.close(linger=0)
    refused.close(linger=0)  # libzmq does not retry a refused handshake: a client must connect again
    admitted[0].close(linger=0)
    wait_for(lambda: hub.broker.gate.admission.by_address.get("127.0.0.1") == 1, what="the hub to see the close")
    later = sockets(zmq.DEALER, hub.endpoint)  # a place is free again
    later.send(HEALTH)
    assert hub_pb2.HubReply.FromString(recv(later, timeout=10)[-1]).WhichOneof("body") == "health"
    admitted[1].send(HEALTH)
    assert recv(admitted[1])


_HANDSHAKE = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
              | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)


def first_handshake(monitor: zmq.Socket[bytes]) -> int:
    """The first handshake outcome the monitor reports (the test's timeout bounds the wait)."""
    while True:
        event = int(recv_monitor_message(monitor)["event"])
        if event & _HANDSHAKE:
            return event


def curve_client(sockets: Sockets, server_key: bytes, endpoint: str) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
    sock = sockets(zmq.DEALER)
    connect_curve(sock, KeyPair.generate(), server_key)
    monitor = sock.get_monitor_socket(_HANDSHAKE)
    sock.connect(endpoint)
    return sock, monitor


def close_monitored(sock: zmq.Socket[bytes], monitor: zmq.Socket[bytes]) -> None:
    sock.disable_monitor()
    monitor.close(linger=0)
    sock.close(linger=0)


def test_a_guarded_socket_whose_zap_handler_is_gone_fails_closed(ctx: zmq.Context[zmq.Socket[bytes]],
                                                                 sockets: Sockets) -> None:
    gate = Gate(ctx, Admission(per_address=10, total=10), "test")
    keys = KeyPair.generate()
    router = sockets(zmq.ROUTER)
    gate.guard(router, keys)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    gate.close()  # nobody answers ZAP any more: libzmq must refuse, not admit
    router.disable_monitor()  # the gate's; the test watches the server's side (the client is only disconnected)
    router.monitor("inproc://fail-closed", _HANDSHAKE)
    watch = sockets(zmq.PAIR, "inproc://fail-closed")
    sock, monitor = curve_client(sockets, keys.public, f"tcp://127.0.0.1:{port}")
    sock.send(b"hello")
    assert first_handshake(watch) != zmq.EVENT_HANDSHAKE_SUCCEEDED
    assert not router.poll(0)
    close_monitored(router, watch)
    close_monitored(sock, monitor)


def test_a_private_hub_refuses_a_stranger_from_its_first_connection(
    spawn_hub: Callable[..., Any], sockets: Sockets, tmp_path: Path
) -> None:
    """A stranger already knocking when the hub binds is refused: the authenticator is up before the bind."""
    members = tmp_path / "players.keys"
    members.write_text(f"{KeyPair.generate().public.decode()}  # the only member\n")
    hub_key = curve.load_or_create(tmp_path / "hubdata").public  # spawn_hub's data directory
    endpoint = f"ipc://{tmp_path / 'hub.sock'}"
    sock, monitor = curve_client(sockets, hub_key, endpoint)  # connects (and retries) before the hub exists
    sock.send(HEALTH)
    started = spawn_hub("--bind", endpoint, "--store", "memory", "--players", str(members), clear=False)
    assert started.key == hub_key
    assert first_handshake(monitor) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    assert not sock.poll(0)  # and it was told nothing (the handshake failed before any request was read)
    close_monitored(sock, monitor)
