"""The console's menu and screens driven with scripted answers (no terminal, no player unless noted)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from services.cli import console as console_mod
from services.cli import launch
from services.cli.console import MENU, Session, menu_loop, run, run_screen
from services.cli.console_screens import about, download, pending_libraries, settings, upload
from services.cli.console_views import bar, downloads, downloads_view, logs, pages, services
from services.cli.keys import Keys
from services.peer.library import read_library
from services.peer.state import State, Status
from services.runtime import config as config_mod
from services.wire import curve
from services.wire.pb import control_pb2
from tests.cli.helpers import configure, emma

BOOK = 16 * 1024


class Script:
    """Plays back answers (an exception class is raised instead); records every question."""

    def __init__(self, *answers: str | type[BaseException]) -> None:
        self.answers = list(answers)
        self.questions: list[str] = []

    def __call__(self, question: str) -> str:
        self.questions.append(question)
        if not self.answers:
            raise EOFError
        answer = self.answers.pop(0)
        if isinstance(answer, type):
            raise answer()
        return answer


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def info(self, event: str, **fields: object) -> None:
        self.events.append((event, fields))


@contextmanager
def no_terminal() -> Iterator[Keys | None]:
    yield None


class Harness:
    def __init__(self, data: Path, *answers: str | type[BaseException]) -> None:
        self.buffer = StringIO()
        self.ask = Script(*answers)
        self.log = Log()
        self.session = Session(data_dir=data, ask=self.ask, out=Console(file=self.buffer, width=120,
                                                                           color_system=None), keys=no_terminal,
                               log=self.log)

    @property
    def text(self) -> str:
        return self.buffer.getvalue()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    configure(tmp_path / "data", hub_port=9)
    return tmp_path / "data"


def make_file(folder: Path, name: str, seed: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(bytes((i * seed) % 253 for i in range(3 * BOOK)))
    return path


# --- the menu ------------------------------------------------------------------------------------------------


def test_menu_lists_the_actions_in_order(data: Path) -> None:
    h = Harness(data)
    assert menu_loop(h.session) == 0  # end of input leaves
    assert [label for label, _ in MENU] == ["Upload File", "Download File", "View Download", "View Logs",
                                            "View Services", "Settings", "About", "Exit"]
    lines = h.text.splitlines()
    assert "EMMA TORRENT" in lines[0]
    assert [line.strip("│ ").split(None, 1) for line in lines[1:9]] == [[str(n), label] for n, (label, _)
                                                                        in enumerate(MENU, start=1)]
    assert h.ask.questions == ["Choose an action: "]
    assert h.text.rstrip().endswith("Bye.")


def test_wrong_choices_are_explained(data: Path) -> None:
    h = Harness(data, "9", "", "0", "upload file please", "-1", "8", "")
    assert menu_loop(h.session) == 0
    assert h.text.count("no action") == 4
    assert "no action '9': type a number from 1 to 8" in h.text
    assert "  type a number from 1 to 8" in h.text
    assert h.ask.questions[-1] == "Stop the player too? [y/N] "


def test_actions_by_name(data: Path) -> None:
    h = Harness(data, "about", "EXIT", "n")
    assert menu_loop(h.session) == 0
    assert "About" in h.text and "Emma Torrent" in h.text


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, EOFError])
def test_ctrl_c_or_end_of_input_at_the_menu_leaves(data: Path, interrupt: type[BaseException]) -> None:
    h = Harness(data, interrupt)
    assert menu_loop(h.session) == 0
    assert "Traceback" not in h.text and "Bye." in h.text


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, EOFError])
def test_ctrl_c_or_end_of_input_in_a_screen_goes_back_to_the_menu(data: Path, interrupt: type[BaseException]
                                                                  ) -> None:
    h = Harness(data, "1", interrupt, "7", "8", "n")
    assert menu_loop(h.session) == 0
    assert "back to the menu" in h.text
    assert h.ask.questions.count("Choose an action: ") == 3


def test_exit_asks_until_yes_or_no(data: Path) -> None:
    h = Harness(data, "8", "maybe", "y")
    assert menu_loop(h.session) == 0
    assert "answer y or n" in h.text
    assert "No player was running. Bye." in h.text


def test_a_missing_player_is_one_line_in_a_screen(data: Path) -> None:
    h = Harness(data)
    run_screen(h.session, "View Download", downloads)
    assert f"no player runs for {data}: start it from 5 View Services, or with `emma peer --detach`" in h.text


# --- first run ---------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_player(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    started: list[Path] = []

    def start(config: config_mod.Config) -> int:
        started.append(config.data_dir)
        return 4242

    monkeypatch.setattr(launch, "is_running", lambda run_dir: False)
    monkeypatch.setattr(launch, "start_in_background", start)
    return started


def test_first_run_asks_port_ip_distributor_then_starts_the_player(tmp_path: Path, fake_player: list[Path]
                                                                   ) -> None:
    data = tmp_path / "fresh"
    h = Harness(data, "abc", "7071", "not a host!", "skip", "0", "", "any", "8", "n")
    assert run(h.session) == 0
    assert [q.split(" [")[0] for q in h.ask.questions[:5]] == ["Hub port", "Hub port", "Hub IP", "Hub IP",
                                                               "Distributor port (0 = random)"]
    assert h.ask.questions[5].startswith("Hub key") and h.ask.questions[6].startswith("Who may download")
    assert "expected a whole number, got 'abc'; try again" in h.text
    saved = config_mod.load(data)
    assert (saved.get("hub.port"), saved.get("hub.ip"), saved.get("distributor.port")) == (7071, "127.0.0.1", 0)
    assert fake_player == [data]
    assert f"Player running for {data} (pid 4242)." in h.text
    assert ("player_started_from_console", {"maestro_pid": 4242, "data_dir": str(data)}) in h.log.events


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, EOFError])
def test_first_run_interrupted_saves_nothing(tmp_path: Path, fake_player: list[Path],
                                             interrupt: type[BaseException]) -> None:
    h = Harness(tmp_path / "fresh", "7071", interrupt)
    assert run(h.session) == 2
    assert "setup left; nothing saved" in h.text
    assert not config_mod.exists(tmp_path / "fresh") and fake_player == []


def test_an_existing_config_skips_setup(data: Path, fake_player: list[Path]) -> None:
    h = Harness(data, "8", "n")
    assert run(h.session) == 0
    assert "First run" not in h.text and fake_player == [data]


def test_a_player_that_cannot_start_still_gives_the_menu(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(config: config_mod.Config) -> int:
        raise launch.PlayerError("the player exited at start; see maestro.out")

    monkeypatch.setattr(launch, "start_in_background", refuse)
    h = Harness(data, "8", "n")
    assert run(h.session) == 0
    assert "could not start the player: the player exited at start; see maestro.out" in h.text


def test_a_broken_config_is_one_line(data: Path) -> None:
    (data / "config.toml").write_text("[hub]\nport = 0\n")
    h = Harness(data)
    assert run(h.session) == 2
    assert "error: " in h.text and "hub.port" in h.text


# --- 1 Upload File -----------------------------------------------------------------------------------------------


def test_upload_shares_and_says_where_the_library_is(data: Path, tmp_path: Path) -> None:
    stuff = make_file(tmp_path, "movie.bin")
    h = Harness(data, "", str(tmp_path / "nope.bin"), str(stuff))
    upload(h.session)
    assert "type an answer, or 'exit' to go back" in h.text
    assert f"no such file: {tmp_path / 'nope.bin'}" in h.text
    libs = list((data / "libs").glob("lib_*.lib"))
    assert len(libs) == 1
    library = read_library(libs[0])
    assert f"written to {libs[0]}" in h.text.replace("\n  ", " ")
    state = State(data / "state.db")
    try:
        record = state.get(library.id_hex)
    finally:
        state.close()
    assert record is not None and record.status is Status.SEEDING and record.stuff_path == stuff
    assert h.log.events[0][0] == "library_shared"


def test_upload_shares_a_folder(data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "album"
    (folder / "disc 1").mkdir(parents=True)
    make_file(folder / "disc 1", "track.bin")
    (folder / "cover").symlink_to(tmp_path)
    h = Harness(data, str(folder))
    upload(h.session)
    library = read_library(next((data / "libs").glob("lib_*.lib")))
    assert library.tree is not None and library.tree.paths == ("disc 1/track.bin",)
    assert "1 files in album/" in h.text and "warning: skipped" in h.text and "symbolic link" in h.text


def test_upload_exit_goes_back(data: Path) -> None:
    h = Harness(data, "exit")
    upload(h.session)
    assert not (data / "libs").exists() or not any((data / "libs").iterdir())


# --- 2 Download File ---------------------------------------------------------------------------------------------


def lib_from_elsewhere(tmp_path: Path, name: str, seed: int) -> Path:
    out = tmp_path / f"{name}.lib"
    result = emma(tmp_path / "maker", "share", str(make_file(tmp_path / "files", name, seed)), "--book-size",
                  str(BOOK), "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_pending_libraries_leave_out_the_ones_seeded(data: Path, tmp_path: Path) -> None:
    wanted = lib_from_elsewhere(tmp_path, "wanted.bin", 2)
    paused = lib_from_elsewhere(tmp_path, "paused.bin", 3)
    for lib in (wanted, paused):
        (data / "libs" / lib.name).write_bytes(lib.read_bytes())
    (data / "libs" / "broken.lib").write_bytes(b"junk")
    shared = emma(data, "share", str(make_file(tmp_path, "mine.bin", 4)), "--book-size", str(BOOK), "--json")
    mine_id = json.loads(shared.stdout)["id"]
    known = {mine_id: Status.SEEDING, read_library(paused).id_hex: Status.PAUSED,
             read_library(wanted).id_hex: Status.DOWNLOADING}
    found = pending_libraries(data / "libs", known)
    assert [(c.library.name, c.status) for c in found] == [("paused.bin", "paused"), ("wanted.bin", "downloading")]
    assert [c.library.name for c in pending_libraries(data / "libs", {})] == ["mine.bin", "paused.bin",
                                                                              "wanted.bin"]


def test_download_lists_checks_the_answer_then_asks_the_player(data: Path, tmp_path: Path) -> None:
    wanted = lib_from_elsewhere(tmp_path, "wanted.bin", 2)
    (data / "libs" / wanted.name).write_bytes(wanted.read_bytes())
    h = Harness(data, "7", str(tmp_path / "nope.lib"), "1")
    run_screen(h.session, "Download File", download)
    assert "wanted.bin" in h.text and "new" in h.text
    assert "no library number 7: 1 to 1" in h.text
    assert "nope.lib" in h.text
    assert "no player runs for" in h.text  # the last step needs the player


def test_download_with_nothing_waiting(data: Path) -> None:
    h = Harness(data, "exit")
    download(h.session)
    assert f"No library waiting in {data / 'libs'}; give the path of a .lib file." in h.text


# --- 6 Settings, 7 About -----------------------------------------------------------------------------------------


def test_settings_validate_save_and_say_when_they_apply(data: Path) -> None:
    h = Harness(data, "99", "hub.port", "0", "7075", "6", "1000", "limits.download_rate", "", "exit")
    settings(h.session)
    assert f"no setting '99': a number from 1 to {len(config_mod.SETTINGS)}, or its name" in h.text
    assert f"this player's key: {curve.load_or_create(data).public.decode()}" in h.text
    assert "port must be between 1 and 65535, got 0; try again" in h.text
    assert "hub.port = 7075: used by the libraries you share from now on" in h.text
    assert "limits.upload_rate = 1000: saved; the player applies it when it starts" in h.text
    saved = config_mod.load(data)
    assert (saved.get("hub.port"), saved.get("limits.upload_rate"), saved.get("limits.download_rate")) == (7075,
                                                                                                        1000, 0)
    assert f"data folder: {data}" in h.text
    assert [e for e, _ in h.log.events] == ["setting_changed", "setting_changed"]


def test_about_says_version_and_places(data: Path) -> None:
    h = Harness(data)
    about(h.session)
    assert "Emma Torrent 0.1.0 (emma-torrent)" in h.text
    assert f"logs       {data / 'logs'}" in h.text


# --- 3, 4, 5: views ----------------------------------------------------------------------------------------------


def test_downloads_view_and_bar() -> None:
    assert bar(0, 4).plain == "░" * 16 + "   0.0%"
    assert bar(2, 4).plain == "█" * 8 + "░" * 8 + "  50.0%"
    items = [control_pb2.Download(library_id="ab", name="a.bin", size=3 << 20, books_total=4, books_have=1,
                                  download_rate=2048, peers=2, state=control_pb2.DOWNLOADING, eta=3725,
                                  downloaded=1 << 20, uploaded=1536, ratio=0.0005),
             control_pb2.Download(library_id="cd", name="[b].bin", size=10, books_total=1, state=control_pb2.SEEDING)]
    text = plain(downloads_view(items, "press any key"), 120)
    assert "a.bin" in text and "25.0%" in text and "down 2.0 KiB/s" in text
    assert "eta 1h02m" in text and "3.0 MiB  got 1.0 MiB  sent 1.5 KiB  ratio 0.00" in text
    assert "[b].bin" in text and "100.0%" in text and "seeding" in text and "press any key" in text
    assert "no libraries yet" in plain(downloads_view([], ""), 120)


def plain(renderable: object, width: int) -> str:
    out = Console(file=StringIO(), width=width, color_system=None)
    out.print(renderable)
    return out.file.getvalue()  # type: ignore[attr-defined]


def test_view_download_fits_80_by_24_in_pages_and_no_line_wraps() -> None:
    long_reason = "hub tcp://a-very-long-host-name.example.org:7070 unreachable since 02:51:03 UTC " * 2
    items = [control_pb2.Download(library_id=f"{i:02x}" * 32, name=f"library number {i} " + "x" * 90,
                                  size=(i + 1) << 30, books_total=100, books_have=i, download_rate=1.5 * (1 << 20),
                                  upload_rate=999 * (1 << 20), peers=120, state=control_pb2.WAITING, detail=long_reason,
                                  eta=86400 * 3, downloaded=1023 << 30, uploaded=1023 << 30, ratio=12.34)
             for i in range(10)]
    shown = [downloads_view(items, "n next page, p previous, any other key goes back", 80, 24, page)
             for page in range(len(pages(items, 24)))]
    assert len(shown) == 2
    for page in shown:
        lines = plain(page, 80).splitlines()
        assert len(lines) <= 23 and all(len(line) <= 80 for line in lines)
    first, second = plain(shown[0], 80), plain(shown[1], 80)
    assert "(10), page 1 of 2" in first and "library number 4" in first and "library number 5" not in first
    assert "page 2 of 2" in second and "library number 9" in second
    assert "eta 3d00h  120 peers" in first  # the rates line is whole
    assert "waiting: hub tcp://a-very-long" in first and "…" in first


def test_services_without_a_player_offers_to_start_it(data: Path) -> None:
    h = Harness(data, "requestor", "exit")
    services(h.session)
    rows = [line for line in h.text.splitlines() if "OFF" in line]
    assert [row.split("│")[1].strip() for row in rows] == ["Maestro", "Distributor", "Requestor"]
    assert h.ask.questions[0] == "Start which service? (maestro; 'exit' to go back): "
    assert "'requestor' is not a service that is off: maestro" in h.text


def write_log(data: Path, kind: str, event: str) -> None:
    with open(data / "logs" / f"{kind}.log", "a") as out:
        out.write(json.dumps({"timestamp": "2026-01-02T03:04:05.000000Z", "level": "warning", "event": event,
                              "process": "maestro"}) + "\n")


def test_logs_choose_show_and_no_follow_without_a_terminal(data: Path) -> None:
    write_log(data, "services", "service_failed")
    h = Harness(data, "9", "services", "y")
    logs(h.session)
    assert "no log '9': a number from 1 to 4, or its name" in h.text
    assert "2026-01-02 03:04:05.000 WARNING  maestro     service_failed" in h.text
    assert "following needs a terminal" in h.text


class KeysAfter:
    """A key reader that lets ``count`` waits pass, calling ``tick`` at each, then reports a key."""

    def __init__(self, count: int, tick: object) -> None:
        self.count, self.tick = count, tick

    def pressed(self, timeout: float) -> bool:
        return self.key(timeout) is not None

    def key(self, timeout: float) -> str | None:
        if self.count == 0:
            return "q"
        self.count -= 1
        if callable(self.tick):
            self.tick()
        return None


def test_logs_follow_until_a_key(data: Path) -> None:
    write_log(data, "errors", "old")
    h = Harness(data, "4", "yes")
    keys = KeysAfter(2, lambda: write_log(data, "errors", "fresh"))

    @contextmanager
    def terminal() -> Iterator[Keys | None]:
        yield keys

    h.session.keys = terminal
    logs(h.session)
    assert h.text.count("fresh") == 2 and "stopped following" in h.text
    assert h.text.index("old") < h.text.index("following errors: press any key to stop") < h.text.index("fresh")


def test_the_console_module_registers_the_command() -> None:
    assert console_mod.console.__doc__ and "interactive menu" in console_mod.console.__doc__


def test_the_menu_frame_is_whole_however_long_the_data_folder(tmp_path: Path) -> None:
    data = tmp_path / ("a-very-long-folder-name-" * 6) / "data"
    configure(data, hub_port=9)
    h = Harness(data)
    assert menu_loop(h.session) == 0
    frame = h.text.splitlines()[: len(MENU) + 2]
    assert all(line[:1] in "╭│╰" for line in frame) and len({len(line) for line in frame}) == 1
    assert "peer-to-peer file distribution" in frame[-1] and frame[0].endswith("╮") and frame[-1].endswith("╯")
    assert f"player data: {data}" in h.text.replace("\n", "")


def test_after_an_action_the_menu_is_short_and_m_shows_it_whole(data: Path) -> None:
    h = Harness(data, "7", "m", "")
    assert menu_loop(h.session) == 0
    assert h.text.count("EMMA TORRENT") == 2  # the first menu and the one asked for; not after About
    assert "1 Upload File   2 Download File" in h.text


def test_progress_bars_count_in_the_units_of_emma_downloads() -> None:
    from rich.progress import Progress

    from services.cli.progress import columns

    out = Console(file=StringIO(), width=120, color_system=None)
    with Progress(*columns(), console=out, auto_refresh=False) as progress:
        task = progress.add_task("movie", total=3 << 20)
        progress.update(task, completed=1 << 20)
        progress.refresh()
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert "1.0 MiB/3.0 MiB" in text and "MB" not in text
