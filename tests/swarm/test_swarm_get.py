"""`emma get` options through the real CLI against a real swarm: --hub overrides the library's hubs, --to
chooses the folder, --on-complete runs a command with the path; a seeding limit stops seeding by itself."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from services.peer.library import read_library, write_library
from services.runtime import config as config_mod
from tests.cli.helpers import emma
from tests.polling import wait_for
from tests.swarm.conftest import log_events
from tools.swarm import Swarm, make_stuff

pytestmark = pytest.mark.slow
BOOK = 16 * 1024
DEAD_HUB = "tcp://127.0.0.1:9"  # where the library says its hub is: nothing listens there


def stuff(tmp_path: Path, name: str, size: int, seed: int) -> Path:
    path = tmp_path / "stuff" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    make_stuff(path, size, seed=seed)
    return path


def test_get_with_hub_to_and_on_complete(tmp_path: Path) -> None:
    source = stuff(tmp_path, "movie.bin", 12 * BOOK + 5, seed=3)
    with Swarm(tmp_path / "swarm", maestro=True, encryption=False) as swarm:
        swarm.start_hub()
        seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
        library = swarm.share(seed, source, BOOK)
        swarm.start_player(seed)
        swarm.start_player(leecher)
        swarm.wait_serving([seed, leecher])
        moved = tmp_path / "moved.lib"  # the hub moved since the .lib was made
        write_library(library.with_hubs((DEAD_HUB,)), moved)
        folder = tmp_path / "elsewhere" / "films"
        script = "import pathlib, sys; pathlib.Path(sys.argv[1] + '.done').write_text(sys.argv[1])"
        command = shlex.join([sys.executable, "-c", script])

        got = emma(leecher.data_dir, "get", str(moved), "--hub", swarm.hub_endpoint, "--to", str(folder),
                   "--on-complete", command, "--wait", "--timeout", "120", "--json")
        assert got.exit_code == 0, got.output
        result = json.loads(got.stdout)
        final = folder / "movie.bin"
        assert (result["state"], result["path"]) == ("seeding", str(final))
        assert result["message"] == f"added {library.id_hex} (movie.bin) into {folder}"
        assert final.read_bytes() == source.read_bytes()
        imported = read_library(config_mod.load(leecher.data_dir).libs_dir / library.file_name)
        assert imported.hubs == (swarm.hub_endpoint,) and imported.id == library.id
        done = wait_for(lambda: final.with_name("movie.bin.done").exists() and final.with_name("movie.bin.done"),
                        60, "the --on-complete command to run")
        assert done.read_text() == str(final)  # the path, one argument, no shell
        ended = wait_for(lambda: log_events(leecher, "events", "on_complete_done"), 60, "the command to be reaped")
        assert [e["command"] for e in ended] == [command]

        rows = {row["id"]: row for row in json.loads(emma(leecher.data_dir, "downloads", "--json").stdout)}
        row = rows[library.id_hex]
        assert (row["downloaded"], row["download_rate"], row["eta"]) == (library.size, 0, None)

        def seed_row() -> dict[str, Any]:
            rows = {row["id"]: row for row in json.loads(emma(seed.data_dir, "downloads", "--json").stdout)}
            return dict(rows[library.id_hex])

        # the Distributor adds its uploads to state.db once a second: the total comes a little after the copy
        shown = wait_for(lambda: (r := seed_row())["uploaded"] >= library.size and r, 60, "the seed's uploads counted")
        assert shown["ratio"] >= 1.0


def test_get_refuses_bad_options_and_writes_nothing(tmp_path: Path) -> None:
    source = stuff(tmp_path, "a.bin", 3 * BOOK, seed=4)
    with Swarm(tmp_path / "swarm", maestro=True, encryption=False) as swarm:
        swarm.start_hub()
        seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
        library = swarm.share(seed, source, BOOK)
        lib = tmp_path / "a.lib"
        write_library(library, lib)
        swarm.start_player(leecher)
        swarm.wait_serving([leecher])
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        cases = [
            (["--to", str(blocker / "below")], "--to: cannot make the folder"),
            (["--on-complete", "no-such-program-here --flag"], "--on-complete: no program 'no-such-program-here'"),
            (["--on-complete", "echo 'unclosed"], "--on-complete: cannot read the command"),
            (["--hub", "not-an-endpoint"], "bad hub endpoint"),
        ]
        for options, error in cases:
            result = emma(leecher.data_dir, "get", str(lib), *options)
            assert result.exit_code == 2, result.output
            assert error in result.stderr and "Traceback" not in result.output
        assert json.loads(emma(leecher.data_dir, "downloads", "--json").stdout) == []
        assert not (config_mod.load(leecher.data_dir).libs_dir / library.file_name).exists()


def test_a_seeding_ratio_limit_stops_seeding_with_its_reason(tmp_path: Path) -> None:
    source = stuff(tmp_path, "b.bin", 8 * BOOK, seed=5)
    with Swarm(tmp_path / "swarm", maestro=True, encryption=False) as swarm:
        swarm.start_hub()
        seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
        config = config_mod.load(seed.data_dir)
        config.set("seeding.ratio", 1)
        config.save()
        library = swarm.share(seed, source, BOOK)
        swarm.start_player(seed)
        swarm.start_player(leecher)
        swarm.wait_serving([seed, leecher])
        swarm.give(leecher, library)
        swarm.wait_complete(library, [leecher], timeout=120)

        def seed_row() -> dict[str, object]:
            rows = json.loads(emma(seed.data_dir, "downloads", "--json").stdout)
            return next(row for row in rows if row["id"] == library.id_hex)

        row = wait_for(lambda: (r := seed_row())["state"] == "paused" and r, 60, "the seed to stop at ratio 1")
        assert str(row["detail"]).startswith("seeding ratio 1 reached (seeding.ratio); raise or clear the limit")
        assert row["upload_rate"] == 0 and float(str(row["ratio"])) >= 1.0
