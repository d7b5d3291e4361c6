"""Logs a person can read, from a real player: periodic announces in debug.log only, words instead of protobuf
enum names, and every line naming the service that wrote it (lines from threads included)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.wire import names
from services.wire.pb import common_pb2, hub_pb2
from tests.cli.helpers import configure, emma, stop_maestro
from tests.polling import wait_for


def lines(data: Path, kind: str) -> list[dict[str, object]]:
    path = data / "logs" / f"{kind}.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_enum_words() -> None:
    assert names.announce_event(hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED) == "periodic"
    assert names.announce_event(hub_pb2.STARTED) == "started"
    assert names.error_code(common_pb2.NOT_FOUND) == "not found" and names.error_code(999) == "code 999"


def test_a_line_logged_from_a_thread_names_its_service(tmp_path: Path) -> None:
    script = ("import sys, threading; from pathlib import Path; from services.runtime.logs import setup_logging, "
              "get_logger; setup_logging(Path(sys.argv[1]), process='distributor'); "
              "t = threading.Thread(target=lambda: get_logger('services').warning('from_a_thread')); t.start(); "
              "t.join()")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)
    (line,) = [line for line in lines(tmp_path, "services") if line["event"] == "from_a_thread"]
    assert line["process"] == "distributor" and isinstance(line["pid"], int)


@pytest.mark.slow
def test_periodic_announces_go_to_the_debug_log_in_words(tmp_path: Path) -> None:
    data = tmp_path / "data"
    configure(data, hub_port=9)  # nothing listens there: the distributor announces again every few seconds
    stuff = tmp_path / "stuff.bin"
    stuff.write_bytes(bytes(range(256)) * 64)
    assert emma(data, "share", str(stuff)).exit_code == 0
    try:
        assert emma(data, "peer", "--detach").exit_code == 0

        def periodic() -> list[dict[str, object]]:
            found = [line for line in lines(data, "debug") if line["event"] == "announce"
                     and line.get("kind") == "periodic" and line["process"] == "distributor"]
            return found if len(found) >= 2 else []

        wait_for(periodic, timeout=60, what="two periodic announces in debug.log")
    finally:
        stop_maestro(data)
    announces = [line for line in lines(data, "events") if line["event"] == "announce"]
    assert [line["kind"] for line in announces][:1] == ["started"]  # and "stopped" when the player stopped
    assert "periodic" not in {line["kind"] for line in announces}
    for kind in ("events", "services", "debug", "errors"):
        for line in lines(data, kind):
            assert line.get("process"), (kind, line)
            text = json.dumps(line)
            assert "UNSPECIFIED" not in text and "ANNOUNCE_EVENT" not in text, (kind, line)
