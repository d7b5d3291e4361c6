"""Fixtures for talking to a real hub over ZMQ on 127.0.0.1.

- ``ctx`` / ``sockets``: a context whose sockets are tracked and closed with
  linger 0 at teardown; terminating the context fails the test instead of
  hanging if something was left open.
- ``recv`` fails the test when nothing arrives within its timeout.
- ``dropped_by_peer`` sends a message and waits for the peer to drop the
  connection (as ``zmq.MAXMSGSIZE`` does): proof that no reply can come,
  without waiting a while for one not to.
- ``hubs`` starts hubs in threads (each with its own context, a random port
  chosen by the OS, a :class:`FakeClock`) and stops every one at teardown.
- ``spawn_hub`` starts ``python -m services.hub`` as a subprocess, reads the
  endpoint it printed, and kills it by pid at teardown.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from services.hub.broker import Broker, stop_broker
from services.hub.logic import HubLogic
from services.hub.model import HubLimits
from services.hub.store import HubStore, open_store
from services.runtime.logs import setup_logging
from services.wire import curve
from services.wire.pb import hub_pb2

T0 = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    """A wall clock the test moves by hand; read by the hub thread, so guarded by a lock."""

    def __init__(self, start: float = T0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="session", autouse=True)
def _hub_logs_through_stdlib() -> None:
    """Route structlog through stdlib logging so pytest captures hub threads' events."""
    setup_logging(None, process="test", console_level=logging.WARNING)


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield context
    term_with_deadline(context)


def term_with_deadline(context: zmq.Context[Any], timeout: float = 30.0) -> None:
    """Terminate a context, failing (not hanging) when a socket was left open."""
    done = threading.Thread(target=context.term, daemon=True)
    done.start()
    done.join(timeout)
    if done.is_alive():
        pytest.fail("zmq context did not terminate: a socket was left open")


@pytest.fixture
def sockets(ctx: zmq.Context[zmq.Socket[bytes]]) -> Iterator[Callable[..., zmq.Socket[bytes]]]:
    made: list[zmq.Socket[bytes]] = []

    def make(kind: int, connect: str | None = None) -> zmq.Socket[bytes]:
        sock = ctx.socket(kind)
        sock.linger = 0
        made.append(sock)
        if connect is not None:
            sock.connect(connect)
        return sock

    yield make
    for sock in made:
        sock.close(linger=0)


def recv(sock: zmq.Socket[bytes], timeout: float = 10.0) -> list[bytes]:
    """Receive one multipart message or fail the test."""
    if not sock.poll(int(timeout * 1000)):
        pytest.fail(f"no reply within {timeout}s")
    return sock.recv_multipart()


def dropped_by_peer(sock: zmq.Socket[bytes], frames: list[bytes], timeout: float = 30.0) -> None:
    """Send ``frames`` and wait until the peer closes the connection: the message dies with it, unanswered."""
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        sock.send_multipart(frames)
        if not monitor.poll(int(timeout * 1000)):
            pytest.fail(f"the peer kept the connection for {timeout}s after an oversized message")
        assert int(recv_monitor_message(monitor)["event"]) == zmq.EVENT_DISCONNECTED
        assert not sock.poll(0), "the dropped message was answered"
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)


def hub_request(request_id: int = 1, version: int = 1, **body: Any) -> bytes:
    return hub_pb2.HubRequest(version=version, request_id=request_id, **body).SerializeToString()


@dataclass
class RunningHub:
    """A hub serving from a thread of this process."""

    endpoint: str
    logic: HubLogic
    broker: Broker
    store: HubStore
    context: zmq.Context[zmq.Socket[bytes]]
    thread: threading.Thread
    stopped: bool = field(default=False)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        stop_broker(self.context, self.broker.control_endpoint)
        self.thread.join(10)
        if self.thread.is_alive():
            pytest.fail("hub thread did not stop")
        self.broker.close()
        self.store.close()
        term_with_deadline(self.context)


def start_hub(
    *,
    store: str | HubStore = "memory",
    db: Path | None = None,
    limits: HubLimits | None = None,
    clock: Callable[[], float] | None = None,
    bind: str = "tcp://127.0.0.1:0",
    ping_timeout: float = 10.0,  # a live endpoint is never late; a dead one is refused at once
    run: bool = True,
) -> RunningHub:
    """Bind a hub (``:0`` = a port the OS picks) and, unless ``run`` is False, serve it in a thread."""
    clock = clock or FakeClock()
    limits = limits or HubLimits()
    opened = open_store(store, db, clock(), refresh_slack=limits.refresh_slack) if isinstance(store, str) else store
    logic = HubLogic(opened, limits, started_at=clock())
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    broker = Broker(logic, context, clock=clock, tick=0.02, ping_timeout=ping_timeout)
    endpoint = broker.bind(bind)
    thread = threading.Thread(target=broker.run, name="test-hub", daemon=True)
    if run:
        thread.start()
    return RunningHub(endpoint, logic, broker, opened, context, thread)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hubs() -> Iterator[Callable[..., RunningHub]]:
    started: list[RunningHub] = []

    def start(**options: Any) -> RunningHub:
        hub = start_hub(**options)
        started.append(hub)
        return hub

    yield start
    for hub in started:
        if not hub.thread.is_alive() and not hub.stopped:
            hub.thread.start()
        hub.stop()


@pytest.fixture
def hub(hubs: Callable[..., RunningHub], clock: FakeClock) -> RunningHub:
    return hubs(clock=clock)


@dataclass
class HubProcess:
    proc: subprocess.Popen[str]
    endpoint: str
    key: bytes = b""  # its CURVE public key; empty when it runs in clear


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of the child's stdout, or fail after ``timeout`` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        pytest.fail(f"hub subprocess printed nothing in {timeout}s")
    return proc.stdout.readline()


@pytest.fixture
def spawn_hub(tmp_path: Path) -> Iterator[Callable[..., HubProcess]]:
    procs: list[subprocess.Popen[str]] = []

    def spawn(*args: str, cli: bool = False, clear: bool = True) -> HubProcess:
        """``python -m services.hub ARGS``, or ``emma hub ARGS`` when ``cli``; in clear unless ``clear`` is False."""
        data = ["--data-dir", str(tmp_path / "hubdata")]
        launcher = ["services.cli.app", *data, "hub"] if cli else ["services.hub", *data]
        mode = ["--no-encryption"] if clear else []
        cmd = [sys.executable, "-m", *launcher, *args, *mode]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        line = read_line(proc, 20.0)
        if "listening on" not in line:
            pytest.fail(f"unexpected first line from the hub: {line!r}")
        # Its key from its data directory (the line it prints next may already sit in the pipe's read buffer,
        # where select() does not see it).
        key = b"" if clear else curve.load_or_create(tmp_path / "hubdata").public
        return HubProcess(proc, line.rsplit(" ", 1)[-1].strip(), key)

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
