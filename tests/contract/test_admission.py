"""Connection caps at the handshake: a real hub refuses the connections past its cap per address."""

from __future__ import annotations

from collections.abc import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

from services.hub.model import HubLimits
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
