"""``emma console``: the interactive menu.

``Session`` carries what every screen needs (the data directory, an ``ask``
function, a rich Console, a key reader, a logger), so screens are plain
functions that tests drive with scripted answers. ``run`` does the first-run
setup, makes sure a player runs, and loops over the menu; Ctrl-C or end of
input at any prompt never ends in a traceback: inside a screen it goes back to
the menu, at the menu it leaves the console (the player keeps running).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from services.cli import console_screens, console_views, launch
from services.cli.context import cli_context
from services.cli.fmt import printable
from services.cli.keys import KeyReader, key_reader
from services.cli.setup import SetupLeft, run_setup
from services.peer.state import StateError
from services.runtime import config as config_mod
from services.runtime import rundir, usable
from services.runtime.logs import get_logger, log_to_files
from services.supervisor.control_client import ControlClient, ControlError, MaestroNotRunning

T = TypeVar("T")
PROMPT = "Choose an action: "
SUBTITLE = "peer-to-peer file distribution"


@dataclass
class Session:
    """One console session: where the player's data is, and how to talk to the person."""

    data_dir: Path
    ask: Callable[[str], str]
    out: Console
    keys: KeyReader = key_reader
    log: Any = field(default_factory=lambda: get_logger("events"))

    def config(self) -> config_mod.Config:
        return config_mod.load(self.data_dir)

    @property
    def client(self) -> ControlClient:
        return ControlClient(rundir.run_dir(self.data_dir))

    def say(self, text: str = "", style: str | None = None) -> None:
        self.out.print(Text(text, style=style or ""), soft_wrap=True)

    def choose(self, question: str, parse: Callable[[str], T]) -> T | None:
        """Ask until ``parse`` accepts the answer (ValueError says why not); None when the answer is `exit`."""
        while True:
            answer = self.ask(question).strip()
            if answer.lower() == "exit":
                return None
            if not answer:
                self.say("  type an answer, or 'exit' to go back", style="yellow")
                continue
            try:
                return parse(answer)
            except ValueError as exc:
                self.say(f"  {printable(exc)}", style="yellow")

    def confirm(self, question: str) -> bool:
        """A [y/N] question: empty means no; anything but yes/no is asked again."""
        while True:
            answer = self.ask(question).strip().lower()
            if answer in {"y", "yes"}:
                return True
            if answer in {"", "n", "no"}:
                return False
            self.say("  answer y or n", style="yellow")


Screen = Callable[[Session], None]
MENU: tuple[tuple[str, Screen | None], ...] = (
    ("Upload File", console_screens.upload),
    ("Download File", console_screens.download),
    ("View Download", console_views.downloads),
    ("View Logs", console_views.logs),
    ("View Services", console_views.services),
    ("Settings", console_screens.settings),
    ("About", console_screens.about),
    ("Exit", None),
)


def show_menu(session: Session) -> None:
    """The menu in its frame; what varies in length (the data folder) goes below it, so the frame keeps its
    width and is never cut."""
    items = Text()
    for number, (label, _) in enumerate(MENU, start=1):
        items.append(f"  {number}  ", style="bold cyan")
        items.append(label + ("\n" if number < len(MENU) else ""))
    width = max(line.cell_len for line in items.split()) + 6  # text, padding and border
    session.out.print(Panel(items, title="[bold]EMMA TORRENT[/bold]", subtitle=SUBTITLE, padding=(0, 2),
                            width=max(width, len(SUBTITLE) + 6)))
    session.say(f"player data: {printable(session.data_dir)}", style="dim")


def show_short_menu(session: Session) -> None:
    """After an action: the menu in a line or two, so what the action printed stays on the screen."""
    items = Text()
    for number, (label, _) in enumerate(MENU, start=1):
        items.append(f"{number} ", style="bold cyan")
        items.append(label + ("   " if number < len(MENU) else ""))
    items.append("   (m: the full menu)", style="dim")
    session.out.print(items)


def pick(answer: str) -> int:
    """Menu number (1-based) for an answer, or ValueError."""
    if answer.isdigit() and 1 <= int(answer) <= len(MENU):
        return int(answer)
    labels = [label.lower() for label, _ in MENU]
    if answer.lower() in labels:
        return labels.index(answer.lower()) + 1
    raise ValueError(f"no action {answer!r}: type a number from 1 to {len(MENU)}")


def menu_loop(session: Session) -> int:
    full = True
    while True:
        if full:
            show_menu(session)
        else:
            show_short_menu(session)
        full = False
        try:
            answer = session.ask(PROMPT).strip()
        except (EOFError, KeyboardInterrupt):
            session.say()
            return leave(session, stop=False)
        if not answer:
            session.say(f"  type a number from 1 to {len(MENU)}", style="yellow")
            continue
        if answer.lower() in {"m", "menu"}:
            full = True
            continue
        try:
            number = pick(answer)
        except ValueError as exc:
            session.say(f"  {exc}", style="yellow")
            continue
        label, screen = MENU[number - 1]
        if screen is None:
            return leave(session, stop=_ask_stop(session))
        run_screen(session, label, screen)


def run_screen(session: Session, label: str, screen: Screen) -> None:
    """Run one screen; whatever goes wrong is one line, and the menu comes back."""
    session.out.rule(label)
    try:
        screen(session)
    except (KeyboardInterrupt, EOFError):
        session.say("\n  back to the menu", style="dim")
    except MaestroNotRunning as exc:
        hint = exc.hint or "start it from 5 View Services, or with `emma peer --detach`"
        session.say(f"  {printable(exc)}: {printable(hint)}", style="red")
    except (ControlError, config_mod.ConfigError, launch.PlayerError, StateError, OSError) as exc:
        session.say(f"  {printable(exc)}", style="red")


def _ask_stop(session: Session) -> bool:
    try:
        return session.confirm("Stop the player too? [y/N] ")
    except (EOFError, KeyboardInterrupt):
        return False


def leave(session: Session, stop: bool) -> int:
    run_dir = rundir.run_dir(session.data_dir)
    if not stop:
        if launch.is_running(run_dir):
            session.say(f"The player keeps running; stop it with `emma --data-dir {session.data_dir} peer stop`.")
        session.say("Bye.")
        return 0
    try:
        launch.stop(run_dir)
        session.log.info("player_stopped_from_console", data_dir=str(session.data_dir))
        session.say("Player stopped. Bye.")
        return 0
    except MaestroNotRunning:
        session.say("No player was running. Bye.")
        return 0
    except (ControlError, launch.PlayerError) as exc:
        session.say(f"  could not stop the player: {printable(exc)}", style="red")
        return 1


def first_run(session: Session) -> bool:
    """Ask the first-run questions when there is no config yet; False if the person gave up."""
    if config_mod.exists(session.data_dir):
        return True
    session.say("First run: let's set up this player.", style="bold")
    try:
        run_setup(session.config(), ask=session.ask, say=session.say)
    except (EOFError, KeyboardInterrupt, SetupLeft):
        session.say("\nsetup left; nothing saved (it asks again next time)", style="red")
        return False
    return True


def report_problems(session: Session) -> None:
    """Settings that stopped working here (a downloads folder gone read-only...): one line each, and where to
    fix them; the console still opens."""
    for problem in usable.problems(session.config()):
        session.say(f"problem: {printable(problem)}", style="bold red")


def ensure_player(session: Session) -> None:
    """Start this data directory's player in the background unless one runs."""
    config = session.config()
    if launch.is_running(config.run_dir):
        session.say(f"Player running for {config.data_dir}.", style="dim")
        return
    session.say("Starting the player in the background...", style="dim")
    try:
        pid = launch.start_in_background(config)
    except launch.PlayerError as exc:
        session.say(f"  could not start the player: {printable(exc)}", style="red")
        return
    session.log.info("player_started_from_console", maestro_pid=pid, data_dir=str(config.data_dir))
    session.say(f"Player running for {config.data_dir} (pid {pid}).", style="green")


def run(session: Session) -> int:
    """The whole console: setup if needed, the player, the menu. Returns the exit status."""
    try:
        if not first_run(session):
            return 2
        report_problems(session)
        ensure_player(session)
    except config_mod.ConfigError as exc:
        session.say(f"error: {printable(exc)}", style="red")
        return 2
    except KeyboardInterrupt:
        session.say("\ninterrupted", style="red")
        return 130
    return menu_loop(session)


def console(ctx: typer.Context) -> None:
    """The interactive menu: upload, download, watch transfers, logs, services, settings."""
    data_dir = cli_context(ctx).data_dir
    out = Console(highlight=False)
    log_to_files(data_dir, "console")
    complete_paths()
    session = Session(data_dir=data_dir, ask=builtins.input, out=out)
    raise typer.Exit(run(session))


def complete_paths() -> None:
    """Tab completes file and folder names at the console's prompts (GNU readline, where Python has it)."""
    try:
        import readline
    except ImportError:  # a Python built without readline: prompts still work, without completion
        return
    readline.set_completer_delims(" \t\n\"'")
    readline.set_completer(_complete_path)
    readline.parse_and_bind("tab: complete")


def _complete_path(text: str, state: int) -> str | None:
    """The ``state``-th name that completes ``text`` (``~`` kept as typed; folders end in /)."""
    expanded = os.path.expanduser(text)
    folder, _, start = expanded.rpartition("/")
    try:
        names = sorted(os.listdir(folder + "/" if folder or expanded.startswith("/") else "."))
    except OSError:
        return None
    matches = []
    for name in names:
        if name.startswith(start) and (start.startswith(".") or not name.startswith(".")):
            full = f"{folder}/{name}" if folder or expanded.startswith("/") else name
            shown = text[: len(text) - len(start)] + name
            matches.append(shown + "/" if os.path.isdir(full) else shown)
    return matches[state] if state < len(matches) else None


