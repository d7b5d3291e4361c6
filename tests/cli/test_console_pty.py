"""The console as a person uses it: in a pseudo-terminal, two players and a real hub.

Alice sets up, uploads a file and seeds it; Bob sets up, downloads it, watches the live view until it
completes, reads logs, restarts a stopped service, changes a setting, reads About and leaves with Ctrl-D
(his player keeps running); Alice leaves and stops hers. Every prompt also gets a wrong answer first.
"""

from __future__ import annotations

import os
import random
import re
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pexpect
import pytest

from services.cli.launch import alive
from services.runtime import config as config_mod
from services.runtime.rundir import maestro_pid, run_dir
from services.supervisor.control_client import ControlClient
from tests.cli.helpers import ANSI, Hub, configure, ctrl_c_reaches_it, emma, stop_maestro

pytestmark = pytest.mark.slow
MENU = "Choose an action: "


class Person:
    """One console session in a pty; ``say`` sends a line once ``prompt`` (a regex) shows."""

    def __init__(self, data: Path, rows: int = 50, columns: int = 120) -> None:
        self.data = data
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
        self.child = pexpect.spawn(sys.executable, ["-m", "services.cli.app", "--data-dir", str(data), "console"],
                                   encoding="utf-8", dimensions=(rows, columns), timeout=30, env=env,
                                   preexec_fn=ctrl_c_reaches_it)
        self.seen = StringIO()
        self.child.logfile_read = self.seen

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        self.child.expect(pattern, timeout=timeout)
        match = self.child.match
        assert isinstance(match, re.Match)
        return match

    def answer(self, prompt: str, text: str) -> None:
        self.expect(prompt)
        self.child.sendline(text)

    def setup(self, hub_port: int, hub_key: str) -> None:
        self.answer(r"Hub port \[7070\] \('skip' keeps it, 'exit' leaves\): ", "seven")
        self.answer("expected a whole number, got 'seven'; try again", str(hub_port))
        self.answer(r"Hub IP \[127.0.0.1\]", "skip")
        self.answer(r"Distributor port \(0 = random\) \[0\]", "99999")
        self.answer("port must be between 0 and 65535, got 99999; try again", "0")
        self.answer(r"Hub key \(the line", "not a key")
        self.answer("a CURVE key is 40 characters", hub_key)
        self.answer("Who may download from this player", "")
        self.expect("Saved settings to")
        self.expect(f"Player running for {re.escape(str(self.data))}")

    def wrong_menu_choices(self) -> None:
        self.answer(MENU, "")
        self.answer("type a number from 1 to 8", "42")
        self.expect("no action '42': type a number from 1 to 8")

    def text(self) -> str:
        return ANSI.sub("", self.seen.getvalue())

    def close(self) -> None:
        self.child.close(force=True)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    running = Hub(tmp_path / "hub")
    yield running
    running.stop()


@pytest.fixture
def people(tmp_path: Path) -> Iterator[list[Person]]:
    sessions: list[Person] = []
    yield sessions
    for person in sessions:
        person.close()
        stop_maestro(person.data)  # the Maestros the consoles started in the background


def test_upload_download_watch_logs_services_settings_about_exit(tmp_path: Path, hub: Hub,
                                                                 people: list[Person]) -> None:
    stuff = tmp_path / "files" / "holiday.mov"
    stuff.parent.mkdir()
    stuff.write_bytes(random.Random(6).randbytes(3 * 1024 * 1024 + 123))

    alice = Person(tmp_path / "alice")
    people.append(alice)
    alice.setup(hub.port, hub.key)
    alice.wrong_menu_choices()
    alice.answer(MENU, "1")
    alice.answer(r"Path of the file or folder to share \(Tab completes; 'exit' to go back\): ", "")
    alice.answer("type an answer, or 'exit' to go back", f'"{tmp_path / "nope.mov"}"')  # pasted in quotes
    alice.expect("no such file")
    alice.child.send(str(stuff)[:-6] + "\t")  # .../holid + Tab: readline completes the name
    alice.child.send("\r")
    lib = Path(alice.expect(r"written to (\S+\.lib)").group(1))
    assert lib.parent == tmp_path / "alice" / "libs" and lib.name.startswith("lib_")
    link = ANSI.sub("", alice.expect(r"link: (emma:[0-9a-f]{64}\?hub=[^\s\x1b]+)").group(1))
    alice.expect(MENU)  # after an action the menu is a line, so what it printed stays on the screen
    after = alice.text().rsplit("written to", 1)[1]
    assert "1 Upload File   2 Download File" in after and "EMMA TORRENT" not in after

    bob = Person(tmp_path / "bob")
    people.append(bob)
    bob.setup(hub.port, hub.key)
    bob.answer(MENU, "2")
    bob.answer("No library waiting in .*; give the path of a .lib file.", "5")
    bob.answer("no library number 5", str(tmp_path / "nope.lib"))
    bob.answer("nope.lib", "emma:1234?hub=tcp://127.0.0.1:1")
    bob.answer("the link's library id must be 64 hex digits", link)  # the link Upload File showed
    bob.expect(f"added {lib.name[4:68]} \\(holiday.mov\\)", timeout=60)

    bob.answer(MENU, "3")
    bob.expect("any other key goes back")
    bob.expect("100.0%.*seeding", timeout=60)
    bob.child.send("q")
    bob.expect(MENU)
    assert (tmp_path / "bob" / "downloads" / "holiday.mov").read_bytes() == stuff.read_bytes()

    bob.child.sendline("4")
    bob.expect(r"Which log\? \(number or name; 'exit' to go back\): ")
    bob.child.sendintr()  # Ctrl-C in a screen: back to the menu
    bob.expect("back to the menu")
    bob.answer(MENU, "4")
    bob.answer("Which log", "7")
    bob.answer("no log '7': a number from 1 to 4, or its name", "events")
    bob.expect("download_complete")
    bob.answer(r"Follow new lines\? \[y/N\] ", "perhaps")
    bob.answer("answer y or n", "y")
    bob.expect("following events: press any key to stop")
    bob.child.send("x")
    bob.expect("stopped following")

    ControlClient(run_dir(tmp_path / "bob")).stop_service("requestor", grace=8.0)
    bob.answer(MENU, "5")
    bob.expect("Requestor.*OFF")
    bob.answer(r"Start which service\? \(requestor; 'exit' to go back\): ", "maestro")
    bob.answer("'maestro' is not a service that is off: requestor", "requestor")
    bob.expect("started requestor")

    bob.answer(MENU, "6")
    bob.answer("Setting to change", "0")
    bob.answer("no setting '0'", "limits.download_rate")
    bob.answer(r"New value for limits.download_rate \[0\]", "fast")
    bob.answer("not a size: 'fast'; write 500K, 1.5M, 2G or a number of bytes \\(per second\\); try again", "5M")
    bob.expect("limits.download_rate = 5242880: applied to the running player")
    bob.answer("Setting to change", "paths.downloads")
    bob.answer(r"New value for paths.downloads \[\]", str(stuff / "below"))  # under a file
    bob.expect("for downloads: Not a directory; try again")
    bob.answer(r"New value for paths.downloads \[\] ", "~/")  # the refused value was not kept
    bob.expect(f"paths.downloads = {re.escape(str(Path.home()))}: takes effect")
    bob.answer("Setting to change", "paths.downloads")
    bob.answer(r"New value for paths.downloads .*'default' is empty\): ", "default")
    bob.expect(r"paths.downloads = : takes effect")
    bob.answer("Setting to change", "exit")
    assert config_mod.load(tmp_path / "bob").get("limits.download_rate") == 5 << 20
    assert config_mod.load(tmp_path / "bob").get("paths.downloads") == ""

    bob.answer(MENU, "7")
    bob.expect(r"Emma Torrent \d+\.\d+\.\d+ \(emma-torrent\)")
    bob.expect(MENU)
    bob.child.sendeof()  # Ctrl-D at the menu: leave, the player keeps running
    bob.expect("The player keeps running; stop it with")
    bob.child.expect(pexpect.EOF)
    bob.child.close()
    assert bob.child.exitstatus == 0
    assert alive(maestro_pid(run_dir(tmp_path / "bob")))

    alice_pid = maestro_pid(run_dir(tmp_path / "alice"))
    alice.child.sendline("8")  # its menu prompt was read after the upload
    alice.answer(r"Stop the player too\? \[y/N\] ", "dunno")
    alice.answer("answer y or n", "y")
    alice.expect("Player stopped. Bye.")
    alice.child.expect(pexpect.EOF)
    alice.child.close()
    assert alice.child.exitstatus == 0 and not alive(alice_pid)

    for person in people:
        assert "Traceback" not in person.text(), person.text()


def test_a_downloads_folder_gone_bad_still_opens_the_console_and_settings_fix_it(tmp_path: Path,
                                                                                 people: list[Person]) -> None:
    data = tmp_path / "carol"
    configure(data, hub_port=9)
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"in the way")
    text = (data / "config.toml").read_text().replace('downloads = ""', f'downloads = "{blocker / "dl"}"')
    (data / "config.toml").write_text(text)  # as a disk that went away would leave it

    carol = Person(data)
    people.append(carol)
    carol.expect(f"problem: downloads folder {re.escape(str(blocker / 'dl'))} cannot be created: .* is a file; "
                 "fix it with")
    carol.expect("Player running for")
    carol.answer(MENU, "6")
    carol.answer("Setting to change", "paths.downloads")
    carol.answer(r"New value for paths.downloads", "default")
    carol.expect("paths.downloads = : takes effect")
    carol.answer("Setting to change", "exit")
    carol.expect(MENU)
    carol.child.sendeof()
    carol.child.expect(pexpect.EOF)
    carol.child.close()
    assert carol.child.exitstatus == 0
    assert "Traceback" not in carol.text(), carol.text()
    assert config_mod.load(data).get("paths.downloads") == ""


def test_exit_during_first_run_leaves_the_console(tmp_path: Path, people: list[Person]) -> None:
    dave = Person(tmp_path / "dave")
    people.append(dave)
    dave.answer(r"Hub port \[7070\]", "7071")
    dave.answer(r"Hub IP \[127.0.0.1\]", "exit")
    dave.expect("setup left; nothing saved")
    dave.child.expect(pexpect.EOF)
    dave.child.close()
    assert dave.child.exitstatus == 2 and not config_mod.exists(tmp_path / "dave")


def test_view_download_pages_a_long_list_in_80_by_24(tmp_path: Path, hub: Hub, people: list[Person]) -> None:
    carol = Person(tmp_path / "carol", rows=24, columns=80)
    people.append(carol)
    carol.setup(hub.port, hub.key)
    for number in range(7):  # 5 libraries fit a page of 24 lines
        stuff = tmp_path / "files" / f"clip-{number}.bin"
        stuff.parent.mkdir(exist_ok=True)
        stuff.write_bytes(random.Random(number).randbytes(20_000))
        assert emma(carol.data, "share", str(stuff)).exit_code == 0
    carol.answer(MENU, "3")
    carol.expect(r"Downloads and shares \(7\), page 1 of 2")
    carol.expect("n next page, p previous, any other key goes back")
    carol.child.send("n")
    carol.expect(r"page 2 of 2")
    carol.child.send("q")
    carol.expect(MENU)
    assert "Traceback" not in carol.text()
