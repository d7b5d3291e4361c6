"""An unlucky user: a damaged state.db, two players started at once on one data folder, a data folder that
cannot be written, a file that changes while it is shared, a hub that does not answer a link. Each is one line
saying what happened and what to do, never a traceback, and nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from services.cli import launch
from services.cli.console import run_screen
from services.cli.console_screens import download, upload
from services.cli.launch import alive
from services.peer import links
from services.peer.librarifier import librarify, librarify_tree, verify
from services.peer.library import LibraryError
from services.runtime import config as config_mod
from services.runtime.rundir import maestro_pid, run_dir
from tests.cli.helpers import Hub, assert_one_line_error, configure, detached_player, emma, stop_maestro
from tests.cli.test_console import Harness
from tests.polling import wait_for
from tests.swarm.conftest import events_in


@pytest.fixture
def data(tmp_path: Path) -> Path:
    configure(tmp_path / "data", hub_port=9)  # nothing listens there: announces fail quietly
    return tmp_path / "data"


@pytest.fixture
def stuff(tmp_path: Path) -> Path:
    path = tmp_path / "stuff.bin"
    path.write_bytes(bytes(range(256)) * 64)
    return path


def damage(state_db: Path, how: str) -> None:
    """What a crash of the disk or a stray command leaves in place of state.db."""
    if how == "truncated":
        state_db.write_bytes(state_db.read_bytes()[:5000])
    else:
        state_db.write_bytes(b"this is not a database\n" * 10)
    for extra in ("-wal", "-shm"):
        state_db.with_name(state_db.name + extra).unlink(missing_ok=True)


@pytest.fixture(params=["truncated", "overwritten"])
def damaged(data: Path, stuff: Path, request: pytest.FixtureRequest) -> Path:
    assert emma(data, "share", str(stuff)).exit_code == 0  # a state.db with a record in it
    damage(data / "state.db", request.param)
    return data


def test_share_with_a_damaged_state_db_says_so_and_shares_nothing(damaged: Path, stuff: Path,
                                                                     tmp_path: Path) -> None:
    libs = sorted((damaged / "libs").iterdir())
    other = tmp_path / "other.bin"
    other.write_bytes(b"other stuff")
    result = emma(damaged, "share", str(other))
    assert_one_line_error(result, f"{damaged / 'state.db'} is damaged (")
    assert f"move it aside (`mv {damaged / 'state.db'} {damaged / 'state.db'}.damaged`)" in result.stderr
    assert "nothing shared" in result.stderr
    assert sorted((damaged / "libs").iterdir()) == libs  # no .lib left for the player to take as a download


@pytest.mark.slow
def test_a_player_on_a_damaged_state_db_says_why_it_cannot_start(damaged: Path) -> None:
    try:
        result = emma(damaged, "peer", "--detach")
        assert_one_line_error(result, f"{damaged / 'state.db'} is damaged (")
        assert "maestro.out" not in result.stderr
    finally:
        stop_maestro(damaged)
    assert not maestro_pid(run_dir(damaged)) or not alive(maestro_pid(run_dir(damaged)) or 0)


@pytest.mark.slow
def test_a_second_player_started_at_the_same_moment_says_which_one_runs(data: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `emma peer --detach` at once both find no player and both spawn a Maestro: the one that loses the
    lock says that a player runs, and its pid, not "exited at start"."""
    with detached_player(data):
        first = maestro_pid(run_dir(data))
        monkeypatch.setattr(launch, "is_running", lambda _run_dir: False)  # as the two see it at the same moment
        try:
            outcome: int | str = launch.start_in_background(config_mod.load(data))
        except launch.PlayerError as exc:
            outcome = str(exc)
        try:
            assert outcome == f"a player already runs for {data} (pid {first}); stop it with `emma peer stop`"
            assert maestro_pid(run_dir(data)) == first and alive(first or 0)
        finally:
            if isinstance(outcome, int):  # it said it started a second player: end that one too
                end(outcome)


def end(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), timeout=60, what=f"pid {pid} gone")


@pytest.mark.slow
def test_a_link_whose_hub_does_not_answer_is_one_json_error_and_nothing_else(data: Path) -> None:
    """What asking the link's hub logs goes to the log files: stdout is the one JSON object a script reads (the
    real program, in its own process: nothing another test set up decides where its logs go)."""
    with socket.socket() as holder:  # a port of this host where no hub answers
        holder.bind(("127.0.0.1", 0))
        link = f"emma:{'ab' * 32}?hub=tcp://127.0.0.1:{holder.getsockname()[1]}"
        with detached_player(data):
            done = subprocess.run([sys.executable, "-m", "services.cli", "--data-dir", str(data), "get", link,
                                   "--json"], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done
    assert done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    assert "the link's hubs (tcp://127.0.0.1:" in json.loads(lines[0])["error"]
    assert "hub_failed" in (data / "logs" / "errors.log").read_text()


# --- a data folder the disk refuses (read-only, full): each refusal is made here by a folder where a file goes ----


def test_settings_that_cannot_be_saved_are_one_line(data: Path) -> None:
    (data / "config.toml.tmp").mkdir()  # where the new config is written before it replaces the old one
    before = (data / "config.toml").read_text()
    result = emma(data, "settings", "set", "hub.port", "7001")
    assert_one_line_error(result, f"the system refused {data / 'config.toml.tmp'}: Is a directory; check that "
                                  "folder's permissions and free space", code=1)
    assert (data / "config.toml").read_text() == before


def test_share_without_room_for_a_publisher_key_is_one_line(data: Path, stuff: Path) -> None:
    (data / f".publisher.key.{os.getpid()}").mkdir()  # the key's temporary file, in this process (CliRunner)
    result = emma(data, "share", str(stuff))
    assert_one_line_error(result, f"cannot make the publisher key in {data}: File exists")
    assert not list((data / "libs").glob("*.lib"))


def test_a_player_whose_log_cannot_be_written_says_so(data: Path) -> None:
    (data / "logs" / "maestro.out").mkdir(parents=True)
    try:
        result = emma(data, "peer", "--detach")
        assert_one_line_error(result, f"cannot write {data / 'logs' / 'maestro.out'}: Is a directory; the player "
                                      "needs its data folder writable")
    finally:
        stop_maestro(data)


# --- a file that changes while it is shared ------------------------------------------------------------------


def written_while_hashed(path: Path, change: str) -> Callable[[int], None]:
    """A progress callback that changes ``path`` once its first book is hashed, as a program still writing it
    would; its time is set back first, so the change shows however coarse the file system's clock."""
    os.utime(path, ns=(10**18, 10**18))
    done: list[int] = []

    def progress(nbytes: int) -> None:
        if not done:
            with path.open("r+b") as handle:
                if change == "grown":
                    handle.seek(0, os.SEEK_END)
                else:
                    handle.seek(len(path.read_bytes()) - 10)
                handle.write(b"0123456789")
        done.append(nbytes)
    return progress


@pytest.mark.parametrize("change", ["overwritten", "grown"])
def test_a_file_written_while_it_is_hashed_is_refused(tmp_path: Path, change: str) -> None:
    path = tmp_path / "growing.log"
    path.write_bytes(bytes(range(256)) * 1024)  # 4 books of 64 KiB
    with pytest.raises(LibraryError, match=f"{path} changed while it was being hashed; share it again once "
                                           "nothing writes to it"):
        librarify(path, hubs=("tcp://127.0.0.1:9",), book_size=65536, progress=written_while_hashed(path, change))


def test_a_file_of_a_folder_written_while_it_is_hashed_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "tree"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a" * 200_000)
    changing = folder / "sub" / "b.bin"
    changing.write_bytes(b"b" * 200_000)
    with pytest.raises(LibraryError, match=f"{changing} changed while it was being hashed"):
        librarify_tree(folder, hubs=("tcp://127.0.0.1:9",), book_size=65536,
                       progress=written_while_hashed(changing, "overwritten"))


def test_a_file_left_alone_while_it_is_hashed_is_shared(tmp_path: Path) -> None:
    path = tmp_path / "still.bin"
    path.write_bytes(bytes(range(256)) * 1024)
    library = librarify(path, hubs=("tcp://127.0.0.1:9",), book_size=65536, progress=lambda _: None)
    assert verify(library, path).ok


# --- a hub told to listen where it cannot ------------------------------------------------------------------------


@pytest.mark.parametrize(("bind", "text"), [
    ("tcp://127.0.0.1:70000", "--bind: the port must be 1 to 65535, or 0 for any free one, got '70000'"),
    ("tcp://127.0.0.1:", "--bind: the port must be 1 to 65535, or 0 for any free one, got ''"),
    ("tcp://127.0.0.1:7x", "got '7x'"),
    ("tcp://:7070", "--bind must be tcp://HOST:PORT"),
    ("tcp://no-such-host.invalid:7070", "cannot listen on tcp://no-such-host.invalid:7070: no address of this host "
                                        "has that name; choose another --bind"),
])
def test_a_hub_bind_it_cannot_listen_on_is_one_line(tmp_path: Path, bind: str, text: str) -> None:
    """Never a hub on another port than asked (libzmq takes 70000 as 4464), nor "No such device"."""
    done = subprocess.run([sys.executable, "-m", "services.cli", "--data-dir", str(tmp_path), "hub", "--bind", bind,
                           "--store", "memory"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done
    lines = done.stderr.splitlines()
    assert done.stdout == "" and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert text in lines[0], lines[0]


# --- a path starting with ~ of a user this host does not know --------------------------------------------------

NO_SUCH_USER = "~emma-no-such-user-here"  # a shell leaves it as typed; so does every command


def test_a_home_of_no_user_is_a_plain_path_on_the_command_line(data: Path) -> None:
    assert_one_line_error(emma(data, "share", f"{NO_SUCH_USER}/stuff.bin"), f"/{NO_SUCH_USER}/stuff.bin")
    assert_one_line_error(emma(data, "lib", "show", f"{NO_SUCH_USER}/x.lib"), f"{NO_SUCH_USER}/x.lib")
    assert_one_line_error(emma(data, "settings", "set", "security.players", f"{NO_SUCH_USER}/keys"),
                          f"cannot read the allowlist {Path.cwd() / NO_SUCH_USER / 'keys'}")


def test_a_home_of_no_user_in_the_console_is_answered_and_the_menu_comes_back(data: Path) -> None:
    for screen in (download, upload):
        h = Harness(data, f"{NO_SUCH_USER}/x.lib", "exit")
        run_screen(h.session, "screen", screen)  # raised RuntimeError: Could not determine home directory
        assert f"{NO_SUCH_USER}/x.lib" in h.text


# --- a relative path in a setting -------------------------------------------------------------------------------


def test_a_relative_downloads_folder_is_saved_as_the_folder_it_was_typed_in(data: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The player runs from another folder than the shell that set it: `dl` must mean the same folder to both."""
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    result = emma(data, "settings", "set", "paths.downloads", "dl")
    assert result.exit_code == 0, result.output
    assert config_mod.load(data).get("paths.downloads") == str(tmp_path / "here" / "dl")
    monkeypatch.chdir(tmp_path)
    assert config_mod.load(data).downloads_dir == tmp_path / "here" / "dl"


def test_a_relative_downloads_folder_written_by_hand_is_under_the_data_folder(data: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    text = (data / "config.toml").read_text().replace('downloads = ""', 'downloads = "dl"')
    (data / "config.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert config_mod.load(data).downloads_dir == data / "dl"


# --- a link as a copy and paste brings it -----------------------------------------------------------------------


@pytest.mark.parametrize("pasted", ["  emma:{id}?hub=tcp://127.0.0.1:7070", "emma:{id}?hub=tcp://127.0.0.1:7070\n",
                                    "EMMA:{id}?hub=tcp://127.0.0.1:7070", "Emma:{id}?hub=tcp://127.0.0.1:7070"])
def test_a_pasted_link_with_blanks_or_capitals_is_a_link(pasted: str) -> None:
    text = pasted.format(id="ab" * 32)
    assert links.is_link(text)
    assert links.parse(text) == links.Link(bytes.fromhex("ab" * 32), ("tcp://127.0.0.1:7070",), ())


@pytest.mark.slow
def test_get_of_a_pasted_link_is_read_as_a_link_not_a_file(data: Path) -> None:
    with detached_player(data):
        result = emma(data, "get", " EMMA:zz?hub=tcp://127.0.0.1:7070")
    assert_one_line_error(result, "the link's library id must be 64 hex digits, got 'zz'")  # not "no such file"


# --- numbers past what a machine word holds, and numbers that are none ------------------------------------------


def test_logs_of_more_lines_than_a_machine_word_holds_shows_them_all(data: Path) -> None:
    (data / "logs").mkdir(exist_ok=True)
    (data / "logs" / "events.log").write_text(
        '{"timestamp": "2026-01-02T03:04:05Z", "level": "info", "event": "hello", "process": "requestor"}\n')
    result = emma(data, "logs", "-n", "9" * 30)
    assert result.exit_code == 0, result.output
    assert "hello" in result.stdout


@pytest.mark.parametrize("timeout", ["-5", "nan", "-inf"])
def test_get_wait_refuses_a_timeout_that_ends_before_it_starts(data: Path, tmp_path: Path, timeout: str) -> None:
    result = emma(data, "get", str(tmp_path / "x.lib"), "--wait", "--timeout", timeout)
    assert_one_line_error(result, "--timeout must be 0 (never) or more seconds, got ")


# --- a file written while it is seeded ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_file_written_while_it_is_seeded_is_no_longer_served_and_says_why(tmp_path: Path) -> None:
    """Edited in place after it was shared, while the player runs: the seed used to serve the new bytes as the
    library's, every leecher threw them away and banned it, and the seed said 'seeding' all along."""
    hub = Hub(tmp_path / "hub")
    seed, leech = tmp_path / "seed", tmp_path / "leech"
    try:
        for folder in (seed, leech):
            configure(folder, hub_port=hub.port, hub_key=hub.key)
            assert emma(folder, "peer", "--detach").exit_code == 0
        stuff = tmp_path / "notes.bin"
        stuff.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: 16 books of 64 KiB
        os.utime(stuff, ns=(10**18, 10**18))  # an old time: the edit shows however coarse the file system's clock
        shared = emma(seed, "share", str(stuff), "--book-size", "64K", "--json")
        assert shared.exit_code == 0, shared.output
        library, link = json.loads(shared.stdout)["id"], json.loads(shared.stdout)["link"]
        wait_for(lambda: any(e.get("library") == library for e in events_in(seed / "logs" / "events.log", "announce")),
                 60, "the seed to serve the library")
        with stuff.open("r+b") as handle:  # the same size, a few bytes changed in place
            handle.seek(100_000)
            handle.write(b"edited")
        got = emma(leech, "get", link)
        assert got.exit_code == 0, got.output

        def seed_row() -> dict[str, object] | None:
            listed = emma(seed, "downloads", "--json")
            rows = {str(r["id"]): r for r in json.loads(listed.stdout)} if listed.exit_code == 0 else {}
            row = rows.get(library)
            return row if row is not None and row["state"] == "error" else None

        row = wait_for(seed_row, 60, "the seed to say the file changed")
        assert f"{stuff} was written while it was seeded: its books no longer match the library" in str(row["detail"])
        assert not (leech / "downloads" / "notes.bin").exists()  # nobody got a copy that is not the library's
    finally:
        stop_maestro(seed)
        stop_maestro(leech)
        hub.stop()


# --- a player that runs and does not answer ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_stuck_player_is_named_not_taken_for_none(data: Path) -> None:
    """A Maestro stopped (SIGSTOP; or its loop wedged): "start one with `emma peer --detach`" sent the person to
    start a second player, which cannot; they are told it runs, its pid, and what to do."""
    with detached_player(data):
        pid = maestro_pid(run_dir(data))
        assert pid
        os.kill(pid, signal.SIGSTOP)
        try:
            said = (f"the player of {data} (pid {pid}) runs but does not answer; it is busy or stopped: try again "
                    f"in a moment, or end it with `kill {pid}` and start it again")
            assert_one_line_error(emma(data, "services"), said)
            quick = subprocess.run([sys.executable, "-m", "services.cli", "--data-dir", str(data), "downloads"],
                                   capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
            assert quick.returncode == 2 and quick.stderr == f"error: {said}\n", quick
        finally:
            os.kill(pid, signal.SIGCONT)


@pytest.mark.slow
def test_a_seed_whose_hub_does_not_answer_says_so_in_services(data: Path, stuff: Path) -> None:
    """Seeding, with no hub to announce to: 'seeding' and a blank line in services told nobody that no player
    could find it."""
    with detached_player(data):  # its hub port, 9, has no hub
        assert emma(data, "share", str(stuff)).exit_code == 0

        def detail() -> str:
            listed = emma(data, "services", "--json")
            rows = {str(r["name"]): r for r in json.loads(listed.stdout)} if listed.exit_code == 0 else {}
            said = str(rows.get("distributor", {}).get("detail", ""))
            return said if said.startswith("announces fail") else ""

        said = wait_for(detail, 60, "the distributor to say its announces fail")
        assert said.startswith("announces fail, so no player finds what this one seeds: ")
        assert "tcp://127.0.0.1:9" in said


# --- a library written over something that is not a file -------------------------------------------------------


def test_share_out_onto_a_fifo_leaves_it_and_says_so(data: Path, stuff: Path, tmp_path: Path) -> None:
    """--out is written by a rename over the path: a FIFO, socket or device there was replaced by a file (as
    root, --out /dev/full replaced the device). A FIFO stands for them here."""
    fifo = tmp_path / "out.lib"
    os.mkfifo(fifo)
    result = emma(data, "share", str(stuff), "--out", str(fifo))
    assert_one_line_error(result, f"cannot write {fifo}: it is a device, FIFO or socket, not a file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not list(tmp_path.glob(".out.lib.tmp"))


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_config_that_is_not_a_file_is_left_and_named(tmp_path: Path, kind: str) -> None:
    """A config.toml that is a folder or a FIFO was taken for none: settings showed the defaults, and the first
    command that saved them replaced a FIFO with a file."""
    data = tmp_path / "data"
    data.mkdir()
    if kind == "folder":
        (data / "config.toml").mkdir()
    else:
        os.mkfifo(data / "config.toml")
    for args in (["settings", "show"], ["downloads"], ["share", str(tmp_path)]):
        assert_one_line_error(emma(data, *args), f"{data / 'config.toml'} is not a file (a folder, FIFO, socket or "
                                                 "device); move it away")
    mode = os.lstat(data / "config.toml").st_mode
    assert stat.S_ISDIR(mode) if kind == "folder" else stat.S_ISFIFO(mode)
