"""Absurd setting values are refused by one rule per key, whatever path they come by.

The paths: ``Config.set`` (CLI, console, setup), a config.toml loaded from disk,
``Config(values=...)``, and a SetRates request on the Maestro's control socket.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from services.peer.commands import Commands
from services.peer.state import State
from services.runtime import config as config_mod
from services.runtime.config import MAX_RATE, MAX_UPLOAD_SLOTS, SETTINGS, ConfigError, Watcher, load, render_toml
from services.supervisor.control_logic import ControlLogic
from services.wire.errors import ErrorCode
from services.wire.pb import control_pb2
from tests.unit.test_commands import ask as command
from tests.unit.test_commands import error as command_error
from tests.unit.test_control_logic import FakeSupervisor, ask, error, ok

U64_MAX = 2**64 - 1

# (key, value, what the refusal says): each must be refused the same way on every path.
ABSURD: list[tuple[str, Any, str]] = [
    ("limits.upload_rate", U64_MAX, f"expected at most {MAX_RATE}"),
    ("limits.download_rate", MAX_RATE + 1, f"expected at most {MAX_RATE}"),
    ("limits.upload_rate", -1, "expected 0 or more"),
    ("limits.upload_rate", float("inf"), "expected a whole number"),
    ("limits.upload_rate", 2.5, "expected a whole number"),
    ("limits.upload_rate", True, "expected a whole number"),
    ("limits.upload_rate", "9" * 5000, "expected a whole number"),
    ("limits.upload_slots", 2**32, f"expected at most {MAX_UPLOAD_SLOTS}"),
    ("limits.upload_slots", 0, "expected 1 or more"),
    ("hub.port", 2**64, "port must be between 1 and 65535"),
    ("distributor.port", -1, "port must be between 0 and 65535"),
    ("maestro.heartbeat_interval", 10**400, "expected a number of seconds"),
    ("maestro.heartbeat_interval", float("nan"), "between 0.05 and 60"),
    ("maestro.heartbeat_interval", 3600, "between 0.05 and 60"),
    ("maestro.stop_grace", 3600, "between 0.05 and 60"),
    ("maestro.stop_grace", True, "expected a number of seconds"),
    ("hub.ip", "fe80::1%\x1b[31m", "not an IP address or host name"),
    ("hub.ip", "a" * 300, "not an IP address or host name"),
    ("hub.ip", 127, "not an IP address or host name"),
    ("distributor.advertise", "host\nname", "not an IP address or host name"),
    ("paths.downloads", "/srv/\x00dl", "NUL"),
    ("paths.downloads", "/" + "d" * 5000, "at most 4096 bytes"),
    ("paths.downloads", 5, "expected a path as text"),
]


@pytest.mark.parametrize(("key", "value", "rule"), ABSURD)
def test_config_set_refuses(tmp_path: Path, key: str, value: Any, rule: str) -> None:
    config = load(tmp_path)
    with pytest.raises(ConfigError, match=rule):
        config.set(key, value)
    assert config.get(key) == SETTINGS[key].default


@pytest.mark.parametrize(("key", "value", "rule"), ABSURD)
def test_constructing_a_config_refuses(tmp_path: Path, key: str, value: Any, rule: str) -> None:
    with pytest.raises(ConfigError, match=rule):
        config_mod.Config(data_dir=tmp_path, values={key: value})


@pytest.mark.parametrize(("key", "value", "rule"), ABSURD)
def test_loading_a_hand_edited_file_refuses_with_key_and_rule(tmp_path: Path, key: str, value: Any,
                                                               rule: str) -> None:
    (tmp_path / "config.toml").write_text(render_toml({key: value}))  # inf, nan, 2**64: all TOML a hand can write
    with pytest.raises(ConfigError, match=rule) as caught:
        load(tmp_path)
    message = str(caught.value)
    assert f"{key}: " in message and f"emma settings set {key} VALUE" in message and "\n" not in message


@pytest.mark.parametrize(("key", "value"), [("limits.upload_rate", MAX_RATE), ("limits.download_rate", 0),
                                            ("limits.upload_slots", MAX_UPLOAD_SLOTS), ("hub.port", 65535),
                                            ("maestro.heartbeat_interval", 60), ("hub.ip", "fe80::1%eth0"),
                                            ("limits.upload_rate", " 42 "), ("hub.port", 7070.0)])
def test_the_bounds_themselves_are_accepted(tmp_path: Path, key: str, value: Any) -> None:
    config = load(tmp_path)
    config.set(key, value)
    config.save()
    assert load(tmp_path).get(key) == config.get(key)


def test_a_running_service_logs_a_bad_edit_once(tmp_path: Path) -> None:
    watcher = Watcher(load(tmp_path))
    (tmp_path / "config.toml").write_text("[limits]\nupload_rate = 18446744073709551615\n")
    with capture_logs() as logs:
        assert watcher.changed() is None
        assert watcher.changed() is None
    assert [e["event"] for e in logs] == ["config_invalid"]
    assert "limits.upload_rate" in logs[0]["error"]


def test_an_oversized_config_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("# " + "x" * config_mod.MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ConfigError, match="not a config; fix or delete it"):
        load(tmp_path)


# --- the control socket --------------------------------------------------------------------------------------


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlLogic]:
    config = config_mod.Config(data_dir=tmp_path / "data", values={})
    config.ensure_dirs()
    state = State(config.state_db)
    yield ControlLogic(FakeSupervisor(), config, state)
    state.close()


def test_a_rate_of_2_64_minus_1_through_the_control_socket_is_refused_and_not_saved(control: ControlLogic) -> None:
    reply = ask(control, rates=control_pb2.SetRates(upload_rate=U64_MAX, download_rate=0))
    assert error(reply) == ErrorCode.INVALID_ARGUMENT
    assert "limits.upload_rate: expected at most" in reply.error.message
    assert not control.config.path.exists()
    assert control.config.get("limits.upload_rate") == 0


def test_one_bad_rate_changes_neither(control: ControlLogic) -> None:
    ok(ask(control, rates=control_pb2.SetRates(upload_rate=1000, download_rate=2000)))
    before = control.config.path.read_bytes()
    reply = ask(control, rates=control_pb2.SetRates(upload_rate=5, download_rate=MAX_RATE + 1))
    assert error(reply) == ErrorCode.INVALID_ARGUMENT
    assert "limits.download_rate" in reply.error.message and "nothing was changed" in reply.error.message
    assert control.config.path.read_bytes() == before
    assert load(control.config.data_dir).get("limits.upload_rate") == 1000


def test_the_largest_rate_through_the_control_socket_is_saved(control: ControlLogic) -> None:
    ok(ask(control, rates=control_pb2.SetRates(upload_rate=MAX_RATE, download_rate=MAX_RATE)))
    assert load(control.config.data_dir).get("limits.download_rate") == MAX_RATE


@pytest.fixture
def commands(tmp_path: Path) -> Iterator[Commands]:
    config = config_mod.Config(data_dir=tmp_path / "data", values={})
    config.ensure_dirs()
    state = State(config.state_db)
    yield Commands(config, state, lambda library_id: None)
    state.close()


def test_a_command_refuses_a_relative_library_path(commands: Commands) -> None:
    reply = command(commands, add=control_pb2.AddLibrary(path="libs/x.lib"))
    assert command_error(reply) == ErrorCode.INVALID_ARGUMENT
    assert "absolute path" in reply.error.message


def test_a_command_refuses_a_fifo_without_hanging(commands: Commands, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.lib"
    os.mkfifo(fifo)
    reply = command(commands, add=control_pb2.AddLibrary(path=str(fifo)))
    assert command_error(reply) == ErrorCode.INVALID_ARGUMENT
    assert "not a regular file" in reply.error.message
