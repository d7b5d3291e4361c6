"""Start-up: `emma --help` and `emma downloads` import only what they use (tools/bench_startup.py times them;
no test here depends on the machine's speed), and the command list `emma --help` shows without importing
the commands says what each command's own help says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli.app import COMMANDS
from tests.cli.helpers import configure

# What the program does for these commands, run as the real entry point, then the modules it imported.
PROBE = ("import json, sys, runpy\nsys.argv = ['emma', *sys.argv[1:]]\ntry:\n"
         "    runpy.run_module('services.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
         "print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
HEAVY = ("rich", "structlog", "redis", "cryptography", "prometheus_client", "services.supervisor.maestro",
         "services.hub", "services.peer.requestor_logic", "services.cli.console")


def imported(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60,
                          check=False)
    modules: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return set(modules)


def heavy(modules: set[str], *more: str) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in (*HEAVY, *more)))


def test_help_imports_no_command_and_no_library_it_does_not_show() -> None:
    modules = imported("--help")
    assert heavy(modules, "zmq", "google.protobuf", "pydantic") == []
    assert not any(m.startswith("services.cli.") and m.endswith("_cmd") for m in modules)


def test_downloads_imports_the_control_client_and_not_the_player(tmp_path: Path) -> None:
    configure(tmp_path / "data", hub_port=9)
    modules = imported("--data-dir", str(tmp_path / "data"), "downloads")
    assert "services.supervisor.control_client" in modules  # it did ask (no player runs: one error line)
    # answered before typer (services/cli/quick.py); pydantic: typer 0.29 converts every option through a pydantic
    # TypeAdapter, ~100 ms of imports (see pyproject) should another command's path pull it in
    assert heavy(modules, "typer", "pydantic") == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_summary_in_help_is_the_command_s_own(name: str) -> None:
    command = COMMANDS[name].load(name)
    own = " ".join((command.help or "").split())
    assert own.startswith(COMMANDS[name].summary.rstrip(".")), (name, own)


def test_the_players_any_of_the_config_is_the_curve_one() -> None:
    from services.runtime import config as config_mod
    from services.wire import curve

    assert config_mod.ANY_PLAYERS == curve.ANY
