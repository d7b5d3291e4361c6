"""The CLI's side of the control socket against a Maestro of another version: a request the running
player is too old to know gets an error that says so and how to fix it, not the old Maestro's words."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import zmq

from services.runtime import rundir
from services.supervisor.control_client import ControlClient, ControlError
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.pb import control_pb2
from services.wire.versions import CONTROL


def old_maestro(run: Path, version: int, answered: threading.Event) -> tuple[zmq.Socket[Any], threading.Thread]:
    """A Maestro of control ``version`` that knows no request at all: it answers each as an old one would a
    request body it does not know."""
    socket: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind(rundir.control_endpoint(run))

    def serve() -> None:
        if socket.poll(30_000):
            frames = socket.recv_multipart()
            error = ProtocolError(ErrorCode.UNKNOWN_REQUEST, "control request has no body").to_pb()
            socket.send_multipart([*frames[:-1], control_pb2.ControlReply(version=version, error=error)
                                   .SerializeToString()])
        answered.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return socket, thread


@pytest.mark.parametrize(("version", "says"), [
    (CONTROL.current - 1, "the running player is older than this emma"),
    (CONTROL.current, "control request has no body"),  # the same version: its own words, nothing to upgrade
])
def test_a_request_an_older_player_does_not_know_says_to_restart_it(tmp_path: Path, version: int, says: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    answered = threading.Event()
    socket, thread = old_maestro(run, version, answered)
    try:
        with pytest.raises(ControlError, match=says) as raised:
            ControlClient(run, timeout=30).seed(tmp_path / "x.lib", tmp_path / "x.bin")
        assert raised.value.code == "UNKNOWN_REQUEST"
        if version < CONTROL.current:
            assert "`emma peer stop`, then `emma peer --detach`" in str(raised.value)
    finally:
        answered.wait(30)
        thread.join(30)
        socket.close(linger=0)
