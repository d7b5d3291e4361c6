"""A running Maestro flooded with garbage on its heartbeat and control sockets restarts nobody.

Each flood is a fixed number of frames; the proof that the Maestro read past it is its own count
of dropped frames (heartbeats) or an answer to every request sent (control), never a sleep.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from services.runtime.rundir import control_endpoint, heartbeat_endpoint, run_dir
from services.wire.pb import control_pb2
from tests.supervisor.test_maestro import Player, players, wait_for  # noqa: F401 - players is a fixture

pytestmark = pytest.mark.slow

BEAT_FLOOD = 20_000  # before the fix, this many bad beats took the Maestro 7 s and both children were "hung"
CONTROL_FLOOD = 400


@pytest.fixture
def connect() -> Iterator[Any]:
    """``connect(kind, endpoint)``: a socket that the test closes at its end."""
    context: zmq.Context[Any] = zmq.Context()
    opened: list[zmq.Socket[Any]] = []

    def make(kind: int, endpoint: str) -> zmq.Socket[Any]:
        socket = context.socket(kind)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(endpoint)
        opened.append(socket)
        return socket

    yield make
    for socket in opened:
        socket.close(linger=0)
    context.term()


def garbage_beats(count: int, pids: dict[str, int]) -> Iterator[bytes]:
    """Random bytes, and well-formed beats that no live child sent."""
    rng = random.Random(6)
    forged = [
        b"",
        control_pb2.Heartbeat(service="requestor", pid=1, state="hung?").SerializeToString(),
        control_pb2.Heartbeat(service="requestor", pid=0).SerializeToString(),
        control_pb2.Heartbeat(service="nobody", pid=pids["distributor"]).SerializeToString(),
        b"\x0a\xff\xff\xff\xff\x0f",  # a length that runs past the end
    ]
    for i in range(count):
        yield forged[i % len(forged)] if i % 7 == 0 else rng.randbytes(rng.randrange(1, 400))


def identities(statuses: dict[str, control_pb2.ServiceStatus]) -> dict[str, tuple[int, int]]:
    return {name: (s.pid, s.restarts) for name, s in statuses.items() if name != "maestro"}


def dropped_beats(player: Player) -> int:
    detail = player.states()["maestro"].detail
    for part in detail.split("; "):
        if part.endswith("bad heartbeat frames"):
            return int(part.split()[1])
    return 0


def test_a_heartbeat_flood_restarts_no_child(players, connect):  # noqa: F811
    player = players()
    before = player.wait_running()
    push = connect(zmq.PUSH, heartbeat_endpoint(run_dir(player.data_dir)))
    push.setsockopt(zmq.SNDTIMEO, 20_000)  # a Maestro that stops reading fails the test, not hangs it
    for frame in garbage_beats(BEAT_FLOOD, {n: s.pid for n, s in before.items()}):
        push.send(frame)
    push.send_multipart([b"\xff", b"\xfe"])  # two more frames, one message
    wait_for(lambda: dropped_beats(player) >= BEAT_FLOOD + 2, 30, "the Maestro to count the whole flood")
    after = player.wait_running()
    assert identities(after) == identities(before)
    assert all(after[name].restarts == 0 for name in ("distributor", "requestor"))
    for name in ("distributor", "requestor"):
        player.wait_fresh_beat(name)  # and their beats are still read: none was lost behind the flood
    assert "last failure" not in after["distributor"].detail + after["requestor"].detail


def test_a_control_flood_is_answered_in_full_and_restarts_no_child(players, connect):  # noqa: F811
    player = players()
    before = player.wait_running()
    dealer = connect(zmq.DEALER, control_endpoint(run_dir(player.data_dir)))
    rng = random.Random(9)
    shapes = [
        lambda: [b"", rng.randbytes(rng.randrange(0, 3000))],
        lambda: [rng.randbytes(50)],  # no delimiter
        lambda: [b"", b"x", b"y", rng.randbytes(10)],  # extra frames
        lambda: [b"", control_pb2.ControlRequest(version=7).SerializeToString()],
        lambda: [b"", control_pb2.ControlRequest(version=1).SerializeToString()],  # no body
        lambda: [b"", control_pb2.ControlRequest(
            version=1, library=control_pb2.LibraryAction(library_id="zz" * 40)).SerializeToString()],
    ]
    for i in range(CONTROL_FLOOD):
        dealer.send_multipart(shapes[i % len(shapes)]())
    big = connect(zmq.DEALER, control_endpoint(run_dir(player.data_dir)))  # too large: the Maestro drops it
    big.send_multipart([b"", b"\x00" * (200 * 1024)])
    dealer.send_multipart([b"", control_pb2.ControlRequest(version=1, services=control_pb2.ListServices())
                           .SerializeToString()])
    replies: list[control_pb2.ControlReply] = []
    for _ in range(CONTROL_FLOOD + 1):
        assert dealer.poll(10_000), f"the Maestro stopped answering after {len(replies)} replies"
        reply = control_pb2.ControlReply()
        reply.ParseFromString(dealer.recv_multipart()[-1])
        replies.append(reply)
    # The library actions go to the Requestor (or are refused as too many at once): their answers come later.
    assert sorted(r.WhichOneof("body") or "" for r in replies) == ["error"] * CONTROL_FLOOD + ["services"]
    [listed] = [r for r in replies if r.WhichOneof("body") == "services"]
    services = {s.name: s for s in listed.services.services}
    assert identities(services) == identities(before)
    assert all(services[name].state == control_pb2.RUNNING for name in ("distributor", "requestor"))


def test_a_child_dying_of_an_exception_leaves_its_cause_with_the_maestro(players):  # noqa: F811
    player = players(env={"EMMA_FAULT": "crash-in-loop:requestor"})
    failed = wait_for(lambda: "last failure" in (s := player.states()["requestor"]).detail and s, 30,
                      "the requestor's failure to carry its last words")
    assert "exited with status 1 (crashed: InjectedFault: EMMA_FAULT asked the requestor loop to fail)" in (
        failed.detail)
    # The distributor runs on, never restarted (on a busy machine it may still be starting when the requestor fails).
    distributor = wait_for(lambda: player.running("distributor"), 30, "the distributor running")
    assert distributor.restarts == 0
