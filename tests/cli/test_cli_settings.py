"""``emma settings show|set`` and first-run setup, silent without a terminal and interactive with one."""

from __future__ import annotations

import json
import socket
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from services.cli import setup as setup_mod
from services.cli.app import app
from services.cli.setup import QUESTIONS, run_setup
from services.runtime.config import SETTINGS, load

runner = CliRunner()


def emma(data: Path, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, ["--data-dir", str(data), *args], input=stdin)


def assert_one_line_error(result: Result, text: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert text in lines[0]
    assert "Traceback" not in result.output


def shown(data: Path) -> dict[str, object]:
    result = emma(data, "settings", "show", "--json")
    assert result.exit_code == 0, result.output
    values: dict[str, object] = json.loads(result.stdout)
    return values


def defaults() -> dict[str, object]:
    return {key: setting.default for key, setting in SETTINGS.items()}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def stuff(tmp_path: Path) -> Path:
    path = tmp_path / "small.bin"
    path.write_bytes(b"emma" * 1000)
    return path


# --- settings show / set ------------------------------------------------------------------------


def test_show_json_defaults(data: Path) -> None:
    assert shown(data) == {"data_dir": str(data), **defaults()}


def test_show_text(data: Path) -> None:
    result = emma(data, "settings", "show")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["data_dir", str(data)]
    rows = {line.split()[0]: line for line in lines[1:len(SETTINGS) + 1]}
    assert list(rows) == list(SETTINGS)
    keys = lines[len(SETTINGS) + 1:]
    assert keys[0].startswith("this player's key: ") and keys[1].startswith("publisher key: ")
    for key, setting in SETTINGS.items():
        assert rows[key].endswith(setting.help)
        if setting.default != "":
            assert rows[key].split()[1] == str(setting.default)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [("hub.port", "9000", 9000), ("hub.ip", "10.0.0.9", "10.0.0.9"), ("distributor.port", "0", 0),
     ("maestro.heartbeat_interval", "2.5", 2.5), ("limits.upload_rate", "1.5M", 3 << 19),
     ("limits.download_rate", "500K", 500 << 10), ("limits.download_rate", "2G", 2 << 30)],
)
def test_set_saves(data: Path, key: str, value: str, expected: object) -> None:
    result = emma(data, "settings", "set", key, value)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{key} = {expected}\n"
    assert shown(data)[key] == expected
    assert load(data).get(key) == expected
    table, _, name = key.partition(".")
    assert tomllib.loads((data / "config.toml").read_text())[table][name] == expected


def test_set_keeps_other_settings(data: Path) -> None:
    emma(data, "settings", "set", "hub.port", "9000")
    emma(data, "settings", "set", "hub.ip", "hub.lan")
    assert shown(data) == {"data_dir": str(data), **defaults(), "hub.port": 9000, "hub.ip": "hub.lan"}


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("hub.colour", "red", "unknown setting 'hub.colour'"),
        ("port", "7070", "unknown setting 'port'"),
        ("hub.port", "0", "port must be between 1 and 65535"),
        ("hub.port", "65536", "port must be between 1 and 65535"),
        ("hub.port", "seven", "expected a whole number"),
        ("distributor.port", "99999", "port must be between 0 and 65535"),
        ("hub.ip", "not a host", "not an IP address or host name"),
        ("limits.upload_slots", "0", "expected 1 or more"),
        ("limits.upload_rate", "-5", "expected 0 or more"),
        ("limits.upload_rate", "fast", "not a size: 'fast'; write 500K, 1.5M, 2G"),
        ("limits.upload_rate", "17G", "expected at most 17179869184"),
        ("maestro.heartbeat_interval", "0", "between 0.05 and 60"),
    ],
)
def test_set_bad_key_or_value(data: Path, key: str, value: str, text: str) -> None:
    emma(data, "settings", "set", "hub.port", "9000")
    before = (data / "config.toml").read_text()
    assert_one_line_error(emma(data, "settings", "set", "--", key, value), text)
    assert (data / "config.toml").read_text() == before


def test_set_missing_value_is_a_usage_error(data: Path) -> None:
    assert_one_line_error(emma(data, "settings", "set", "hub.port"),
                          "missing argument 'value'; see `emma settings set --help`")


def test_corrupt_config_is_a_one_line_error(data: Path) -> None:
    data.mkdir()
    (data / "config.toml").write_text("[hub\n")
    assert_one_line_error(emma(data, "settings", "show"), "fix or delete it")
    assert_one_line_error(emma(data, "settings", "set", "hub.port", "1"), "fix or delete it")


def test_invalid_value_in_config_is_a_one_line_error(data: Path, stuff: Path) -> None:
    data.mkdir()
    (data / "config.toml").write_text("[hub]\nport = 123456\n")
    assert_one_line_error(emma(data, "settings", "show"), "hub.port: port must be between 1 and 65535")
    assert_one_line_error(emma(data, "share", str(stuff)), "hub.port")


# --- first run ----------------------------------------------------------------------------------


def test_first_run_without_a_terminal_writes_defaults_silently(data: Path, stuff: Path) -> None:
    result = emma(data, "share", str(stuff), "--json")
    assert result.exit_code == 0, result.output
    assert "First run" not in result.output and "?" not in result.stderr  # no question asked (a link holds a ?)
    assert json.loads(result.stdout)["name"] == "small.bin"
    raw = tomllib.loads((data / "config.toml").read_text())
    assert {f"{t}.{k}": v for t, entries in raw.items() for k, v in entries.items()} == defaults()


def test_existing_config_is_not_touched_by_later_runs(data: Path, stuff: Path) -> None:
    emma(data, "settings", "set", "hub.port", "9000")
    assert emma(data, "share", str(stuff)).exit_code == 0
    assert load(data).get("hub.port") == 9000


def test_first_run_with_a_terminal_asks(data: Path, stuff: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup_mod, "interactive", lambda: True)
    result = emma(data, "share", str(stuff), "--json", stdin="skip\n10.0.0.9\n70000\n0\nnot a key\n\nskip\n")
    assert result.exit_code == 0, result.output
    assert "First run" in result.stdout
    assert "port must be between 0 and 65535, got 70000; try again" in result.stdout
    assert "a CURVE key is 40 characters" in result.stdout  # the hub key, then kept empty
    config = load(data)
    assert (config.get("hub.ip"), config.get("hub.port"), config.get("distributor.port")) == ("10.0.0.9", 7070, 0)
    assert json.loads(result.stdout.splitlines()[-1])["name"] == "small.bin"


def test_first_run_interrupted_saves_nothing(data: Path, stuff: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup_mod, "interactive", lambda: True)
    result = emma(data, "share", str(stuff), stdin="9000\n")
    assert result.exit_code == 2
    assert result.stderr == "error: setup left; nothing saved (it asks again next time)\n"
    assert not (data / "config.toml").exists()


def test_exit_during_first_run_leaves_it(data: Path, stuff: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup_mod, "interactive", lambda: True)
    result = emma(data, "share", str(stuff), stdin="9000\nexit\n")
    assert result.exit_code == 2 and "Hub IP" in result.stdout and "Distributor port" not in result.stdout
    assert result.stderr == "error: setup left; nothing saved (it asks again next time)\n"
    assert not (data / "config.toml").exists()


class Script:
    """An ``ask`` function that plays back answers and records the questions."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.questions: list[str] = []

    def __call__(self, question: str) -> str:
        self.questions.append(question)
        return self.answers.pop(0)


def test_run_setup_with_skip_and_a_retried_port(tmp_path: Path) -> None:
    config = load(tmp_path)
    with socket.socket() as held:  # a port nobody else gets while the test runs, and that refuse() may bind
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("0.0.0.0", 0))
        port = held.getsockname()[1]
        ask = Script("skip", "10.0.0.7", "99999", "port", f"  {port}  ", "", "any")
        said: list[str] = []
        run_setup(config, ask=ask, say=said.append)
    assert ask.answers == []
    assert ask.questions[0] == "Hub port [7070] ('skip' keeps it, 'exit' leaves): "
    assert ask.questions[1] == "Hub IP [127.0.0.1] ('skip' keeps it, 'exit' leaves): "
    assert [q.split(" [")[0] for q in ask.questions[2:5]] == ["Distributor port (0 = random)"] * 3
    assert ask.questions[5].startswith("Hub key") and ask.questions[6].startswith("Who may download")
    assert said == [
        "  port must be between 0 and 65535, got 99999; try again",
        "  expected a whole number, got 'port'; try again",
        f"Saved settings to {tmp_path / 'config.toml'}",
    ]
    saved = load(tmp_path)
    assert (saved.get("hub.ip"), saved.get("hub.port"), saved.get("distributor.port")) == ("10.0.0.7", 7070, port)


def test_run_setup_empty_answers_keep_every_default(tmp_path: Path) -> None:
    config = load(tmp_path)
    ask = Script("", "skip", "", "", "skip")
    run_setup(config, ask=ask, say=lambda _: None)
    assert len(ask.questions) == len(QUESTIONS)
    assert (tmp_path / "config.toml").is_file()
    assert load(tmp_path).as_dict() == defaults()


def test_run_setup_invalid_hub_ip_then_valid(tmp_path: Path) -> None:
    config = load(tmp_path)
    ask = Script("9000", "bad host!", "hub.example.org", "", "", "")
    said: list[str] = []
    run_setup(config, ask=ask, say=said.append)
    assert "not an IP address or host name" in said[0]
    assert load(tmp_path).hub_endpoint == "tcp://hub.example.org:9000"
