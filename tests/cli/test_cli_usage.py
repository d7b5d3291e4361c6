"""Usage as people type it: one ``error:`` line for a usage error, JSON errors under ``--json``, ``--version``,
``-h``, bare ``emma``, ``--data-dir`` after the command, and no ``<bool>`` in any help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.app import app
from services.runtime.version import version
from tests.cli.helpers import assert_one_line_error, emma

runner = CliRunner()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point in a child process, as a shell runs it."""
    return subprocess.run([sys.executable, "-m", "services.cli.app", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_bare_emma_prints_help_and_exits_0() -> None:
    done = run()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: emma ") and "Commands:" in done.stdout and done.stderr == ""


def test_version_and_short_help() -> None:
    done = run("--version")
    assert (done.returncode, done.stdout) == (0, f"emma {version()}\n")
    short = run("share", "-h")
    assert short.returncode == 0 and short.stdout.startswith("Usage: emma share ")


@pytest.mark.parametrize(
    ("args", "text"),
    [(["share"], "missing argument 'file'; see `emma share --help`"),
     (["bogus"], "no such command 'bogus'"),
     (["lib", "show", "--colour"], "no such option: --colour; see `emma lib show --help`"),
     (["logs", "-n", "x"], "invalid value for '--lines'"),
     (["settings", "set", "hub.port"], "missing argument 'value'")],
)
def test_usage_errors_are_one_line(tmp_path: Path, args: list[str], text: str) -> None:
    assert_one_line_error(emma(tmp_path / "data", *args), text)


def test_usage_error_of_the_real_program_is_one_line_not_a_box() -> None:
    done = run("share")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: missing argument 'file'; see `emma share --help`\n"


def test_json_commands_print_json_errors(tmp_path: Path) -> None:
    usage = emma(tmp_path / "data", "share", "--json")
    assert usage.exit_code == 2 and json.loads(usage.stdout) == {"error": "missing argument 'file'; see `emma "
                                                                           "share --help`"}
    not_running = emma(tmp_path / "data", "downloads", "--json")
    assert not_running.exit_code == 2 and "no player runs for" in json.loads(not_running.stdout)["error"]
    assert not_running.stderr == ""


@pytest.mark.parametrize("where", ["after", "after="])
def test_data_dir_after_the_command(tmp_path: Path, where: str) -> None:
    data = tmp_path / "late"
    option = ["--data-dir", str(data)] if where == "after" else [f"--data-dir={data}"]
    result = runner.invoke(app, ["settings", "set", "hub.port", "9001", *option])
    assert result.exit_code == 0, result.output
    assert "port = 9001" in (data / "config.toml").read_text()


def test_data_dir_after_double_dash_is_an_argument(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--data-dir", str(tmp_path / "d"), "settings", "set", "--", "hub.ip", "--data-dir"])
    assert_one_line_error(result, "not an IP address or host name: '--data-dir'")


def test_no_bool_metavars_in_any_help() -> None:
    for args in (["--help"], ["hub", "--help"], ["share", "--help"], ["logs", "--help"], ["peer", "--help"],
                 ["get", "--help"], ["settings", "show", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "<bool>" not in result.stdout and "│" not in result.stdout, args


def test_a_group_without_its_command_prints_its_help() -> None:
    result = runner.invoke(app, ["settings"])
    assert result.exit_code == 0 and "Usage: emma settings" in result.stdout
