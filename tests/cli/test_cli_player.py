"""Commands that talk to a player (peer, services, downloads, get, pause, resume, remove): against a real
Maestro started with `emma peer --detach`, and against none."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli.launch import alive
from services.runtime import config as config_mod
from services.runtime.rundir import maestro_pid, run_dir
from services.supervisor.control_client import ControlClient
from tests.cli.helpers import assert_json_error, assert_one_line_error, configure, detached_player, emma, stop_maestro
from tests.polling import wait_for
from tests.swarm.conftest import events_in

BOOK = 16 * 1024


def make_file(folder: Path, name: str, size: int = 5 * BOOK, seed: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(bytes((i * seed + i // 7) % 251 for i in range(size)))
    return path


def foreign_library(root: Path, name: str, seed: int) -> tuple[Path, str]:
    """A library made by another data directory (so the player under test must download it)."""
    other = root / f"maker-{name}"
    lib = root / f"{name}.lib"
    result = emma(other, "share", str(make_file(root / "files", name, seed=seed)), "--book-size", str(BOOK),
                  "--out", str(lib), "--json")
    assert result.exit_code == 0, result.output
    return lib, json.loads(result.stdout)["id"]


def downloads(data: Path) -> dict[str, dict[str, object]]:
    result = emma(data, "downloads", "--json")
    assert result.exit_code == 0, result.output
    return {str(row["id"]): row for row in json.loads(result.stdout)}


def services(data: Path) -> dict[str, dict[str, object]]:
    result = emma(data, "services", "--json")
    assert result.exit_code == 0, result.output
    return {str(row["name"]): row for row in json.loads(result.stdout)}


# --- no player --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["peer", "status"], ["peer", "status", "--json"], ["services"], ["services", "--json"],
     ["services", "--start", "requestor"], ["downloads"], ["downloads", "--json"], ["pause", "ab12"],
     ["resume", "ab12"], ["remove", "ab12", "--json"], ["metrics"], ["metrics", "--json"]],
)
def test_without_a_player_commands_say_how_to_start_one(tmp_path: Path, args: list[str]) -> None:
    data = tmp_path / "data"
    result = emma(data, *args)
    if "--json" in args:
        assert_json_error(result, f"no player runs for {data}; start one with `emma peer --detach`")
    else:
        assert_one_line_error(result, f"no player runs for {data}; start one with `emma peer --detach`")
        assert result.stdout == ""


def test_get_without_a_player(tmp_path: Path) -> None:
    lib, _ = foreign_library(tmp_path, "a.bin", seed=3)
    assert_one_line_error(emma(tmp_path / "data", "get", str(lib)), "no player runs for")


def test_peer_stop_without_a_player(tmp_path: Path) -> None:
    assert_one_line_error(emma(tmp_path / "data", "peer", "stop"), "no player runs for")


def test_get_a_file_that_is_no_library(tmp_path: Path) -> None:
    (tmp_path / "junk.lib").write_bytes(b"not a library")
    assert_one_line_error(emma(tmp_path / "data", "get", str(tmp_path / "junk.lib")), "junk.lib")
    assert_one_line_error(emma(tmp_path / "data", "get", str(tmp_path / "none.lib")), "none.lib")


# --- a real player ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def player(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with detached_player(tmp_path_factory.mktemp("player") / "data") as data:
        yield data


@pytest.mark.slow
def test_detach_reports_the_pid_and_refuses_a_second_player(player: Path) -> None:
    pid = maestro_pid(run_dir(player))
    assert pid and alive(pid)
    assert_one_line_error(emma(player, "peer", "--detach"), f"a player already runs for {player}")
    assert_one_line_error(emma(player, "peer", "start", "--detach"), "a player already runs")
    foreground = subprocess.run([sys.executable, "-m", "services.cli.app", "--data-dir", str(player), "peer"],
                                capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert foreground.returncode == 2
    assert foreground.stderr.strip().startswith(f"error: a player already runs for {player} (pid {pid})")


@pytest.mark.slow
def test_status_and_services(player: Path) -> None:
    rows = services(player)
    assert list(rows) == ["maestro", "distributor", "requestor"]
    assert all(row["state"] == "RUNNING" and int(str(row["pid"])) > 0 for row in rows.values())
    assert rows["maestro"]["pid"] == maestro_pid(run_dir(player))
    status = emma(player, "peer", "status", "--json")
    assert status.exit_code == 0 and [r["name"] for r in json.loads(status.stdout)] == list(rows)
    text = emma(player, "peer", "status")
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["service", "state", "pid", "uptime", "restarts", "detail"]
    assert [line.split()[:2] for line in lines[1:]] == [[name, "RUNNING"] for name in rows]


@pytest.mark.slow
def test_metrics_print_the_players_numbers_once(player: Path) -> None:
    result = emma(player, "metrics", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    up = {row["labels"]["service"]: row["value"] for row in rows if row["name"] == "emma_service_up"}
    assert up == {"maestro": 1.0, "distributor": 1.0, "requestor": 1.0}
    text = emma(player, "metrics")
    assert text.exit_code == 0
    assert 'emma_service_up{service=maestro} 1' in text.stdout.splitlines()
    assert any(line.startswith("emma_player_received_bytes_total ") for line in text.stdout.splitlines())


@pytest.mark.slow
def test_services_stop_and_start_one(player: Path) -> None:
    stopped = emma(player, "services", "--stop", "requestor")
    assert stopped.exit_code == 0 and stopped.stdout.startswith("stopped requestor")
    assert services(player)["requestor"]["state"] == "OFF"
    started = emma(player, "services", "--start", "requestor", "--json")
    assert started.exit_code == 0
    assert started.stderr.startswith("started requestor")  # with --json, stdout is only the JSON
    assert json.loads(started.stdout)[2]["name"] == "requestor"
    wait_for(lambda: services(player)["requestor"]["state"] == "RUNNING", 15, "the requestor running again")


@pytest.mark.slow
def test_services_unknown_name(player: Path) -> None:
    assert_one_line_error(emma(player, "services", "--start", "janitor"), "start: no service 'janitor'")


@pytest.mark.slow
def test_shared_file_is_listed_as_seeding(player: Path, tmp_path: Path) -> None:
    shared = emma(player, "share", str(make_file(tmp_path, "seeded.bin", seed=5)), "--book-size", str(BOOK),
                  "--json")
    library_id = json.loads(shared.stdout)["id"]
    row = downloads(player)[library_id]
    assert (row["name"], row["state"], row["progress"], row["books"], row["have"]) == ("seeded.bin", "seeding",
                                                                                      100.0, 5, 5)
    assert (row["eta"], row["downloaded"], row["uploaded"], row["ratio"], row["download_rate"]) == (None, 0, 0, 0.0,
                                                                                                    0)
    text = emma(player, "downloads")
    assert text.stdout.splitlines()[0].split() == ["id", "name", "size", "done", "down", "up", "eta", "got", "sent",
                                                   "ratio", "peers", "state"]
    line = next(line for line in text.stdout.splitlines() if line.startswith(library_id[:12]))
    assert "seeded.bin" in line and line.endswith("seeding") and "100.0%" in line and " 0.00 " in line

    # pausing a complete library stops seeding it (the distributor stops serving it); resume seeds it again
    logs = [player / "logs" / f"{kind}.log" for kind in ("events", "debug")]

    def announced(kind: str) -> bool:
        return any(e.get("kind") == kind and e.get("library") == library_id for log in logs
                   for e in events_in(log, "announce"))

    wait_for(lambda: announced("started"), 60, "the distributor to serve it")  # else it is never served at all
    paused = emma(player, "pause", library_id[:16])
    assert paused.stdout == "paused seeded.bin: complete, no longer seeding (`emma resume` seeds it again)\n"
    row = downloads(player)[library_id]
    assert (row["state"], row["detail"]) == ("paused", "complete; not seeding (`emma resume` seeds it again)")
    wait_for(lambda: announced("stopped"), 60, "the distributor to stop serving it")
    assert emma(player, "resume", library_id[:16]).stdout == "seeding seeded.bin again\n"
    assert downloads(player)[library_id]["state"] == "seeding"


@pytest.mark.slow
def test_get_pause_resume_remove(player: Path, tmp_path: Path) -> None:
    lib, library_id = foreign_library(tmp_path, "wanted.bin", seed=7)
    got = emma(player, "get", str(lib), "--json")
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout) == {"id": library_id, "name": "wanted.bin",
                                      "message": f"added {library_id} (wanted.bin)"}
    assert (player / "libs" / f"lib_{library_id}.lib").is_file()
    assert downloads(player)[library_id]["state"] == "waiting"  # for the hub, that no test started
    row = wait_for(lambda: str((r := downloads(player)[library_id])["detail"]).endswith(" UTC") and r, 60,
                   "the download to say its hub does not answer")
    assert row["state"] == "waiting" and str(row["detail"]).startswith("hub tcp://127.0.0.1:")
    assert " unreachable since " in str(row["detail"]) and isinstance(row["since"], int)
    again = emma(player, "get", str(lib))
    assert again.stdout == f"{library_id} is already known (downloading)\n"

    prefix = library_id[:10]
    paused = emma(player, "pause", prefix, "--json")
    assert json.loads(paused.stdout) == {"id": library_id, "message": "paused wanted.bin"}  # the full id
    assert downloads(player)[library_id]["state"] == "paused"
    assert emma(player, "resume", prefix).stdout == "resumed wanted.bin\n"
    assert downloads(player)[library_id]["state"] == "waiting"
    removed = emma(player, "remove", library_id)
    assert removed.exit_code == 0 and removed.stdout.startswith("removed wanted.bin")
    assert library_id not in downloads(player)
    assert_one_line_error(emma(player, "resume", prefix), f"library: no library with id {prefix}")


def requestor_events(data: Path, event: str, library_id: str) -> list[dict[str, object]]:
    return [e for e in events_in(data / "logs" / "events.log", event) if e.get("library") == library_id]


@pytest.mark.slow
def test_get_and_pause_are_carried_out_by_the_requestor_before_the_cli_is_answered(player: Path,
                                                                                   tmp_path: Path) -> None:
    lib, library_id = foreign_library(tmp_path, "at-once.bin", seed=11)
    got = emma(player, "get", str(lib))
    assert got.stdout == f"added {library_id} (at-once.bin)\n", got.output
    # Already in the log as the answer arrives: the download started on the command, not at a later look.
    assert [e["process"] for e in requestor_events(player, "download_started", library_id)] == ["requestor"]
    assert emma(player, "pause", library_id[:12]).stdout == "paused at-once.bin\n"
    stopped = requestor_events(player, "download_stopped", library_id)
    assert [(e["process"], e["reason"]) for e in stopped] == [("requestor", "paused")]
    assert emma(player, "remove", library_id).exit_code == 0


@pytest.mark.slow
def test_with_the_requestor_stopped_a_get_says_what_to_do_and_the_maestro_answers_on(player: Path,
                                                                                     tmp_path: Path) -> None:
    lib, library_id = foreign_library(tmp_path, "later.bin", seed=13)
    stopped = emma(player, "services", "--stop", "requestor")
    assert stopped.exit_code == 0, stopped.output
    try:
        told = ("the player's requestor does not run (OFF): it was stopped: start it with "
                "`emma services --start requestor`; nothing was changed")
        assert_one_line_error(emma(player, "get", str(lib)), f"get: {told}")
        assert_one_line_error(emma(player, "pause", library_id[:8]), f"library: {told}")
        shared = emma(player, "share", str(make_file(tmp_path, "not-now.bin", seed=17)), "--book-size", str(BOOK))
        assert_one_line_error(shared, f"the player did not record the library as seeding: {told}")
        rows = services(player)  # the Maestro answers on
        assert (rows["maestro"]["state"], rows["requestor"]["state"]) == ("RUNNING", "OFF")
        assert library_id not in downloads(player)
        assert not (player / "libs" / f"lib_{library_id}.lib").exists()
    finally:
        emma(player, "services", "--start", "requestor")
        wait_for(lambda: services(player)["requestor"]["state"] == "RUNNING", 30, "the requestor running again")
    assert emma(player, "get", str(lib)).stdout == f"added {library_id} (later.bin)\n"
    assert emma(player, "remove", library_id).exit_code == 0


@pytest.mark.slow
@pytest.mark.parametrize(("prefix", "text"), [("XYZ", "give a library id (hex)"), ("0" * 65, "give a library id")])
def test_library_actions_refuse_bad_ids(player: Path, prefix: str, text: str) -> None:
    assert_one_line_error(emma(player, "pause", prefix), text)


@pytest.mark.slow
def test_get_wait_gives_up_after_the_timeout(player: Path, tmp_path: Path) -> None:
    lib, library_id = foreign_library(tmp_path, "nobody-has-it.bin", seed=9)
    result = emma(player, "get", str(lib), "--wait", "--timeout", "0.5")
    assert result.stdout.startswith("added")
    assert_one_line_error(result, "not complete after 0.5 s; it goes on in the background")
    emma(player, "remove", library_id)


@pytest.mark.slow
def test_live_rates_keep_settings_saved_since_the_player_started(player: Path) -> None:
    assert emma(player, "settings", "set", "hub.port", "9100").exit_code == 0
    try:
        ControlClient(run_dir(player)).set_rates(1000, 0)
        saved = config_mod.load(player)
        assert (saved.get("hub.port"), saved.get("limits.upload_rate")) == (9100, 1000)
    finally:
        emma(player, "settings", "set", "hub.port", "9")
        emma(player, "settings", "set", "limits.upload_rate", "0")


@pytest.mark.slow
def test_peer_stop(tmp_path: Path) -> None:
    data = tmp_path / "data"
    configure(data, hub_port=9)
    try:
        started = emma(data, "peer", "start", "--detach")
        assert started.exit_code == 0, started.output
        pid = maestro_pid(run_dir(data))
        assert started.stdout == f"player running for {data} (pid {pid})\n"
        stopped = emma(data, "peer", "stop")
        assert stopped.exit_code == 0 and stopped.stdout == "player stopped\n"
        assert not alive(pid)
        assert_one_line_error(emma(data, "peer", "status"), "no player runs for")
    finally:
        stop_maestro(data)


@pytest.mark.slow
def test_a_distributor_that_cannot_listen_fails_at_once_with_the_os_reason(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    data = tmp_path / "data"
    configure(data, hub_port=9, distributor_ip="127.0.0.1", distributor_port=port)
    try:
        started = emma(data, "peer", "--detach")
        assert_one_line_error(started, f"its distributor cannot run: last failure: exited with status 78 (cannot "
                                       f"listen on tcp://127.0.0.1:{port}: Address already in use; another "
                                       f"program uses port {port}: choose another with `emma settings set "
                                       f"distributor.port N` (0 = any))")
        row = services(data)["distributor"]
        assert (row["state"], row["restarts"]) == ("FATAL", 0)  # not retried: retrying cannot help
        assert "Address already in use" in str(row["detail"])
    finally:
        stop_maestro(data)
        holder.close()
