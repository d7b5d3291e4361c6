"""The Maestro with real processes: respawn, hang detection, FATAL, no orphans, one per data dir, a stop
that blocks nothing. How soon things happen is tools/bench_supervisor.py's figure; the deadlines the
Maestro keeps are tested on a fake clock in tests/unit/test_policy.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from services.runtime import config as config_mod
from services.runtime.rundir import control_endpoint, run_dir
from services.supervisor.control_client import ControlClient, MaestroNotRunning
from services.wire.pb import control_pb2

pytestmark = pytest.mark.slow


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except MaestroNotRunning:
            value = None
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class Player:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, settings: dict[str, Any] | None = None
                 ) -> None:
        self.data_dir = data_dir
        config = config_mod.load(data_dir)
        config.set("hub.port", 9)  # nothing listens: announces fail quietly, which is fine here
        for key, value in (settings or {}).items():
            config.set(key, value)
        config.ensure_dirs()
        config.save()
        self.client = ControlClient(run_dir(data_dir), timeout=10.0)
        self.log = open(data_dir / "maestro-test.out", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.supervisor.maestro", "--data-dir", str(data_dir)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
        )

    def states(self) -> dict[str, control_pb2.ServiceStatus]:
        return {s.name: s for s in self.client.services()}

    def running(self, name: str) -> control_pb2.ServiceStatus | None:
        status = self.states().get(name)
        return status if status is not None and status.state == control_pb2.RUNNING else None

    def wait_fresh_beat(self, name: str, timeout: float = 60.0) -> None:
        """Until an answer shows ``name``'s heartbeat younger than the answer before: a beat read in between."""
        ages: list[float] = []

        def younger() -> bool:
            ages.append(self.states()[name].heartbeat_age)
            return len(ages) > 1 and 0 <= ages[-1] < ages[-2]

        wait_for(younger, timeout, f"a fresh heartbeat from the {name}")

    def events(self, name: str) -> list[dict[str, Any]]:
        """The records called ``name`` in the player's services log so far."""
        log = self.data_dir / "logs" / "services.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [record for line in lines if (record := json.loads(line)).get("event") == name]

    def wait_running(self, timeout: float = 60.0) -> dict[str, control_pb2.ServiceStatus]:
        return wait_for(lambda: self.running("distributor") and self.running("requestor") and self.states(),
                        timeout, "both services RUNNING")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def players(tmp_path: Path) -> Iterator[Callable[..., Player]]:
    started: list[Player] = []

    def start(name: str = "p", env: dict[str, str] | None = None, settings: dict[str, Any] | None = None
              ) -> Player:
        player = Player(tmp_path / name, env, settings)
        started.append(player)
        return player

    yield start
    for player in started:
        children = []
        try:
            children = [s.pid for s in player.client.services() if s.name != "maestro" and s.pid]
        except MaestroNotRunning:
            pass
        player.stop()
        for pid in children:
            wait_for(lambda pid=pid: not alive(pid), 30, f"child {pid} to end")  # type: ignore[misc]


def test_child_killed_is_running_again(players):
    """How soon is bench_supervisor's figure (target: back within 1 s); here only that it comes back, alone."""
    player = players()
    before = player.wait_running()["requestor"]
    os.kill(before.pid, signal.SIGKILL)
    after = wait_for(lambda: (s := player.running("requestor")) and s.pid != before.pid and s, 60, "a new requestor")
    assert after.restarts == 1
    assert player.running("distributor").pid == player.states()["distributor"].pid


def test_hung_child_is_detected_killed_and_replaced(players):
    player = players()
    before = player.wait_running()["distributor"]
    os.kill(before.pid, signal.SIGSTOP)  # how soon a hang is noticed is bench_supervisor's figure (target 1.5 s)
    wait_for(lambda: player.states()["distributor"].pid != before.pid, 60, "the hung child to be replaced")
    wait_for(lambda: not alive(before.pid), 60, "the hung child to be killed")
    after = wait_for(lambda: (s := player.running("distributor")) and s.pid != before.pid and s, 60, "a new one")
    assert "hung" in player.states()["distributor"].detail or after.restarts == 1


def test_child_crashing_at_start_ends_fatal_and_the_rest_keeps_running(players):
    player = players(env={"EMMA_FAULT": "crash-at-start:requestor"})
    fatal = wait_for(lambda: (s := player.states()["requestor"]).state == control_pb2.FATAL and s, 60,
                     "the requestor to be FATAL")
    assert fatal.restarts >= 5
    assert player.proc.poll() is None
    distributor = player.running("distributor")
    assert distributor is not None and alive(distributor.pid)  # FATAL is sticky: tests/unit/test_policy.py


def test_killed_maestro_leaves_no_children(players):
    player = players()
    pids = [s.pid for s in player.wait_running().values() if s.name != "maestro"]
    player.proc.kill()
    player.proc.wait()
    wait_for(lambda: not any(alive(pid) for pid in pids), 30, "every child to exit")


def test_second_maestro_on_the_same_data_dir_refuses(players, tmp_path):
    player = players()
    player.wait_running()
    second = subprocess.run(
        [sys.executable, "-m", "services.supervisor.maestro", "--data-dir", str(player.data_dir)],
        capture_output=True, text=True, timeout=30,
    )
    assert second.returncode == 2
    assert "already runs" in second.stdout
    assert player.proc.poll() is None


def test_control_socket_answers_garbage_with_an_error_and_keeps_serving(players):
    player = players()
    player.wait_running()
    ctx: zmq.Context[Any] = zmq.Context()
    socket = ctx.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(control_endpoint(run_dir(player.data_dir)))
    try:
        for garbage in (b"\xff\xfe\x00garbage", b"", control_pb2.ControlRequest(version=9).SerializeToString()):
            socket.send_multipart([b"", garbage])
            assert socket.poll(10_000), "no reply to garbage"
            reply = control_pb2.ControlReply()
            reply.ParseFromString(socket.recv_multipart()[-1])
            assert reply.WhichOneof("body") == "error"
    finally:
        socket.close(linger=0)
        ctx.term()
    assert player.running("distributor") is not None


def test_while_a_child_ignoring_sigterm_stops_the_maestro_serves_and_the_others_beat(players):
    """The stop is begun and answered at once; while the requestor is STOPPING (its grace is long, so the
    window cannot close under the test), the control socket answers and the distributor's beats are read."""
    player = players(env={"EMMA_FAULT": "ignore-term:requestor"}, settings={"maestro.stop_grace": 60})
    before = player.wait_running()
    assert player.client.service("requestor", False) == "stopping requestor"
    assert player.states()["requestor"].state == control_pb2.STOPPING  # an answer from the control socket
    player.wait_fresh_beat("distributor", timeout=50)  # a distributor beat read mid-stop
    assert player.states()["requestor"].state == control_pb2.STOPPING  # (still: the beat came within the stop)
    assert alive(before["requestor"].pid)  # it ignored SIGTERM
    os.kill(before["requestor"].pid, signal.SIGKILL)  # the test ends it; the SIGKILL at the grace is below
    wait_for(lambda: player.states()["requestor"].state == control_pb2.OFF, 60, "the requestor OFF once gone")
    distributor = player.running("distributor")
    assert distributor is not None and distributor.pid == before["distributor"].pid and distributor.restarts == 0


def test_a_child_ignoring_sigterm_is_killed_at_the_grace_and_stays_off(players):
    player = players(env={"EMMA_FAULT": "ignore-term:requestor"}, settings={"maestro.stop_grace": 0.5})
    before = player.wait_running()
    assert player.client.stop_service("requestor", grace=0.5) == "stopped requestor"
    assert not alive(before["requestor"].pid)
    assert [e["ending"] for e in player.events("service_stopped") if e["service"] == "requestor"] == ["killed"]
    assert player.events("service_killed")[0]["service"] == "requestor"
    assert player.states()["requestor"].state == control_pb2.OFF
    assert player.client.service("requestor", True) == "started requestor"
    wait_for(lambda: player.running("requestor"), 60, "the requestor started again")


def test_shutdown_stops_the_children_at_once_and_keeps_answering(players):
    """The distributor (first in line) ignores SIGTERM and its grace is long: the requestor is OFF while the
    distributor still stops -- one after the other, the requestor would wait out the distributor's grace."""
    player = players(env={"EMMA_FAULT": "ignore-term:distributor"}, settings={"maestro.stop_grace": 60})
    before = player.wait_running()
    assert player.client.shutdown() == "shutting down"
    wait_for(lambda: (s := player.states())["requestor"].state == control_pb2.OFF
             and s["distributor"].state == control_pb2.STOPPING, 50, "the requestor OFF, the distributor stopping")
    assert alive(before["distributor"].pid)
    os.kill(before["distributor"].pid, signal.SIGKILL)  # the test ends it rather than wait out the grace
    assert player.proc.wait(60) == 0
    assert not alive(before["requestor"].pid) and not alive(before["distributor"].pid)
    assert len(player.events("maestro_stopping")) == 1
