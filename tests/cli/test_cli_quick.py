"""`emma downloads` answered before typer (services/cli/quick.py) says exactly what the typer command says:
the same arguments, run both ways as real processes, give the same output and exit code; and only the
arguments it reads whole are answered there."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli import quick
from tests.cli.helpers import configure, detached_player, emma

QUICK = [sys.executable, "-m", "services.cli"]  # what the `emma` console script runs
TYPER = [sys.executable, "-m", "services.cli.app"]  # every command through typer
BOOK = 16 * 1024


@pytest.mark.parametrize(("argv", "read"), [
    (["downloads"], (None, False)),
    (["downloads", "--json"], (None, True)),
    (["--data-dir", "/d", "downloads"], ("/d", False)),
    (["downloads", "--data-dir", "/d", "--json"], ("/d", True)),
    (["--data-dir=/d", "downloads", "--json"], ("/d", True)),
    (["downloads", "--data-dir=~/x"], ("~/x", False)),
])
def test_a_plain_downloads_is_read_whole(argv: list[str], read: tuple[str | None, bool]) -> None:
    assert quick.read(argv) == read


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["downloads", "--help"], ["downloads", "-h"], ["--json", "downloads"], ["downloads", "--jsn"],
    ["downloads", "extra"], ["download"], ["services"], ["downloads", "--json", "--json"],
    ["--data-dir", "/a", "--data-dir", "/b", "downloads"], ["--data-dir", "", "downloads"],
    ["--data-dir", "--json", "downloads"], ["downloads", "--data-dir"], ["--version"], ["downloads", "--", "--json"],
])
def test_anything_else_goes_to_typer(argv: list[str]) -> None:
    assert quick.read(argv) is None


def both(*args: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    run = [subprocess.run([*way, *args], capture_output=True, text=True, timeout=60, check=False)
           for way in (QUICK, TYPER)]
    return run[0], run[1]


def assert_same(*args: str) -> subprocess.CompletedProcess[str]:
    fast, slow = both(*args)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr), args
    return fast


def test_without_a_player_both_ways_say_how_to_start_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    configure(data, hub_port=9)
    text = assert_same("--data-dir", str(data), "downloads")
    assert text.returncode == 2 and text.stderr.startswith("error: no player runs for ")
    as_json = assert_same("downloads", "--data-dir", str(data), "--json")
    assert as_json.returncode == 2 and "start one with `emma peer --detach`" in json.loads(as_json.stdout)["error"]


def test_a_setting_that_stopped_working_warns_both_ways(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = configure(data, hub_port=9)
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    config.values["paths.downloads"] = str(blocked / "downloads")  # set before it went bad, as a disk unmounted
    config.save()
    result = assert_same("downloads", "--data-dir", str(data))
    assert result.stderr.startswith("warning: downloads folder ") and result.returncode == 2


@pytest.fixture(scope="module")
def player(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("quick")
    stuff = root / "shared.bin"
    stuff.write_bytes(bytes(range(256)) * (3 * BOOK // 256))
    with detached_player(root / "data") as data:
        shared = emma(data, "share", str(stuff), "--book-size", str(BOOK))
        assert shared.exit_code == 0, shared.output
        yield data


@pytest.mark.slow
def test_a_running_players_downloads_are_the_same_both_ways(player: Path) -> None:
    table = assert_same("--data-dir", str(player), "downloads")
    assert table.returncode == 0 and "shared.bin" in table.stdout and table.stdout.rstrip().endswith("seeding")
    rows = json.loads(assert_same("downloads", "--json", "--data-dir", str(player)).stdout)
    assert [(row["name"], row["state"], row["progress"]) for row in rows] == [("shared.bin", "seeding", 100.0)]
