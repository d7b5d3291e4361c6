"""``emma about``, ``emma swarm``, shell completion, and help text on every command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import typer
import typer.main
from typer._click import core as click_core
from typer.core import TyperGroup

from services.cli import swarm_cmd
from services.cli.app import app
from tests.cli.helpers import assert_one_line_error, emma, runner

EMMA = [sys.executable, "-m", "services.cli.app"]


def test_about_text(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = emma(data, "about")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"Emma Torrent {metadata.version('emma-torrent')} (emma-torrent)"
    assert "peer to peer" in lines[1]
    rows = dict(line.split(None, 1) for line in lines[3:])
    assert rows == {"data_dir": str(data), "config": str(data / "config.toml"), "libraries": str(data / "libs"),
                    "downloads": str(data / "downloads"), "state": str(data / "state.db"),
                    "logs": str(data / "logs")}
    assert not data.exists()  # about writes nothing, not even a first-run config


def test_about_json_follows_the_downloads_setting(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert emma(data, "settings", "set", "paths.downloads", str(tmp_path / "dl")).exit_code == 0
    info = json.loads(emma(data, "about", "--json").stdout)
    assert info["version"] == metadata.version("emma-torrent")
    assert info["downloads"] == str(tmp_path / "dl")


def test_swarm_passes_its_arguments_to_the_script() -> None:
    result = subprocess.run([*EMMA, "swarm", "--help"], capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "--peers" in result.stdout and "--chaos" in result.stdout
    bad = subprocess.run([*EMMA, "swarm", "--peers", "1"], capture_output=True, text=True, timeout=30,
                         stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and "--peers > --seeds" in bad.stderr


def test_swarm_without_a_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swarm_cmd, "find_script", lambda: None)
    result = runner.invoke(app, ["swarm", "--peers", "3"])
    assert_one_line_error(result, "tools/swarm.py not found: the swarm script ships with the source checkout")


def test_swarm_script_is_found_from_the_package() -> None:
    script = swarm_cmd.find_script()
    assert script is not None and script == Path(__file__).resolve().parents[2] / "tools" / "swarm.py"


@pytest.mark.slow
def test_swarm_runs_a_small_swarm(tmp_path: Path) -> None:
    proc = subprocess.Popen([*EMMA, "swarm", "--peers", "2", "--size", "256K"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL, start_new_session=True,
                            cwd=tmp_path)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)  # the script ends the hub and players it started
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "all copies byte-identical" in out


def test_shell_completion_is_offered() -> None:
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout
    env = {**os.environ, "_EMMA_COMPLETE": "complete_bash", "COMP_WORDS": "emma logs --kind ", "COMP_CWORD": "3"}
    done = subprocess.run(EMMA, capture_output=True, text=True, env=env, timeout=30, stdin=subprocess.DEVNULL)
    assert done.stdout.split() == ["events", "services", "debug", "errors"]
    env.update(COMP_WORDS="emma con", COMP_CWORD="1")
    assert subprocess.run(EMMA, capture_output=True, text=True, env=env, timeout=30).stdout.split() == ["console"]


def _commands(group: TyperGroup, prefix: str = "") -> list[tuple[str, str | None]]:
    """Every command of the real command tree (the lazily loaded ones loaded), with its help."""
    ctx = click_core.Context(group)
    found: list[tuple[str, str | None]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, TyperGroup):
            found.extend(_commands(command, f"{prefix}{name} "))
        else:
            found.append((prefix + name, command.help))
    return found


def test_every_command_has_help_text() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    commands = dict(_commands(root))
    expected = {"console", "share", "get", "downloads", "pause", "resume", "remove", "services", "logs", "hub",
                "about", "swarm", "peer start", "peer stop", "peer status", "settings show", "settings set",
                "lib show", "lib verify"}
    assert expected <= set(commands)
    assert all(commands[name] for name in expected), commands
    for name in expected:
        result = runner.invoke(app, [*name.split(), "--help"])
        assert result.exit_code == 0 or name == "swarm", (name, result.output)
