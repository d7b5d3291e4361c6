"""Nothing locks a person out: a setting that cannot work here is refused when it is set; one that stops
working later is one line on every command, which still runs (the player too), and Settings can fix it."""

from __future__ import annotations

import json
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.peer.state import State, Status
from tests.cli.helpers import assert_one_line_error, configure, emma, stop_maestro
from tests.polling import wait_for


@pytest.fixture
def data(tmp_path: Path) -> Path:
    configure(tmp_path / "data", hub_port=9)  # nothing listens there: announces fail quietly
    return tmp_path / "data"


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_bytes(b"not a folder")
    return path


@pytest.fixture
def listening() -> Iterator[int]:
    """A port another program holds (listens on, all addresses)."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield sock.getsockname()[1]


def saved(data: Path) -> dict[str, dict[str, object]]:
    return tomllib.loads((data / "config.toml").read_text())


def break_downloads(data: Path, folder: Path) -> None:
    """What a disk that went away does: the saved downloads folder cannot be made any more (a file is in the
    way). Written into the file directly, as `emma settings set` would refuse it."""
    text = (data / "config.toml").read_text().replace('downloads = ""', f'downloads = "{folder}"')
    (data / "config.toml").write_text(text)


def test_a_downloads_folder_that_cannot_be_made_is_refused(data: Path, a_file: Path) -> None:
    before = (data / "config.toml").read_text()
    assert_one_line_error(emma(data, "settings", "set", "paths.downloads", str(a_file / "under")),
                          f"cannot use {a_file / 'under'} for downloads: Not a directory")
    assert_one_line_error(emma(data, "settings", "set", "paths.downloads", str(a_file)), "for downloads")
    assert (data / "config.toml").read_text() == before


def test_a_downloads_folder_is_made_when_set_and_reset_to_the_default(data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "new" / "dl"
    result = emma(data, "settings", "set", "paths.downloads", str(folder))
    assert result.exit_code == 0, result.output
    assert folder.is_dir() and list(folder.iterdir()) == []  # made, and the probe file is gone
    result = emma(data, "settings", "set", "paths.downloads", "")
    assert result.exit_code == 0 and saved(data)["paths"]["downloads"] == ""


def test_a_distributor_address_not_of_this_host_is_refused(data: Path) -> None:
    assert_one_line_error(emma(data, "settings", "set", "distributor.ip", "192.0.2.7"),
                          "192.0.2.7 is not an address of this host")
    for fine in ("127.0.0.1", "0.0.0.0"):
        assert emma(data, "settings", "set", "distributor.ip", fine).exit_code == 0


def test_a_port_in_use_is_refused(data: Path, listening: int) -> None:
    assert_one_line_error(emma(data, "settings", "set", "distributor.port", str(listening)),
                          f"port {listening} on 0.0.0.0 is in use by another program")
    assert_one_line_error(emma(data, "settings", "set", "metrics.bind", f"127.0.0.1:{listening}"), "in use")
    assert saved(data)["distributor"]["port"] == 0


def test_a_folder_gone_bad_warns_every_command_in_one_line(data: Path, a_file: Path) -> None:
    break_downloads(data, a_file / "dl")
    warning = (f"warning: downloads folder {a_file / 'dl'} cannot be created: {a_file} is a file; fix it with "
               "`emma settings set paths.downloads DIR`")
    for args in (["settings", "show"], ["downloads"], ["services", "--json"]):
        result = emma(data, *args)
        assert result.stderr.splitlines()[0].startswith(warning), (args, result.stderr)
        assert "Traceback" not in result.output
    assert emma(data, "settings", "show").exit_code == 0
    fixed = emma(data, "settings", "set", "paths.downloads", "")
    assert fixed.exit_code == 0 and "warning" not in fixed.stderr
    assert emma(data, "settings", "show").stderr == ""


@pytest.mark.slow
def test_a_folder_gone_bad_stops_neither_share_nor_the_player(data: Path, a_file: Path, tmp_path: Path) -> None:
    break_downloads(data, a_file / "dl")
    stuff = tmp_path / "stuff.bin"
    stuff.write_bytes(bytes(range(256)) * 300)
    shared = emma(data, "share", str(stuff), "--json")
    assert shared.exit_code == 0, shared.output
    assert "cannot write" not in shared.output
    library = json.loads(shared.stdout)["id"]
    state = State(data / "state.db")
    try:
        record = state.get(library)
        assert record is not None and record.status is Status.SEEDING
    finally:
        state.close()
    try:
        started = emma(data, "peer", "start", "--detach")
        assert started.exit_code == 0, started.output
        assert "downloads folder" in started.stderr and "Traceback" not in started.output

        def row() -> dict[str, object] | None:
            listed = emma(data, "downloads", "--json")
            rows = {str(r["id"]): r for r in json.loads(listed.stdout)} if listed.exit_code == 0 else {}
            return rows.get(library)

        seen = wait_for(row, timeout=30, what="the shared library listed by the player")
        assert seen["state"] == "seeding"  # not taken as a download
    finally:
        stop_maestro(data)


@pytest.mark.parametrize(("key", "text"), [("security.players", "player keys (or any)"),
                                           ("security.publishers", "trusted publisher keys (or empty)")])
def test_a_file_of_keys_that_cannot_be_read_is_refused(data: Path, tmp_path: Path, key: str, text: str) -> None:
    before = (data / "config.toml").read_text()
    missing, garbled = tmp_path / "missing.keys", tmp_path / "garbled.keys"
    garbled.write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert_one_line_error(emma(data, "settings", "set", key, str(missing)), f"{key} must name a readable file of "
                          f"{text}: cannot read")
    assert_one_line_error(emma(data, "settings", "set", key, str(garbled)), f"{garbled}:1: bad ")
    assert (data / "config.toml").read_text() == before
    assert "stay in force" not in emma(data, "settings", "set", key, str(missing)).stderr  # none were read


@pytest.mark.slow
def test_a_players_file_gone_says_why_the_distributor_cannot_run(data: Path, tmp_path: Path) -> None:
    """A file of player keys removed after it was set: every command warns, and the player says why its Distributor
    cannot start (not "exited with status 1"); it never starts open to everyone."""
    keys = tmp_path / "players.keys"
    (data / "config.toml").write_text((data / "config.toml").read_text().replace('players = "any"',
                                                                                  f'players = "{keys}"'))
    shown = emma(data, "settings", "show")
    assert f"warning: security.players names {keys}, which cannot be read" in shown.stderr, shown.stderr
    try:
        started = emma(data, "peer", "start", "--detach")
        assert started.exit_code != 0, started.output
        assert "its distributor cannot run" in started.stderr, started.stderr
        assert f"(cannot read the allowlist {keys}: No such file or directory; fix it" in started.stderr
        assert "restart the player" in started.stderr
    finally:
        stop_maestro(data)
