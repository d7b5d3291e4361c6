"""Console screens that ask and act: Upload File, Download File, Settings, About."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from services.cli.about import about_info, about_lines
from services.cli.fmt import human_bytes, printable
from services.cli.keys_cmd import key_lines
from services.cli.sharing import ShareError, share_file
from services.peer import identity, links
from services.peer.library import Library, LibraryError, read_library, write_library
from services.peer.state import State, Status
from services.runtime import usable
from services.runtime.config import SETTINGS, Config, ConfigError, given_path
from services.supervisor.control_client import MaestroNotRunning
from services.wire import curve
from services.wire.pb import control_pb2

if TYPE_CHECKING:
    from services.cli.console import Session


def typed_path(answer: str) -> Path:
    """A path as a person types or pastes it: in quotes or not, with ``~``; made absolute."""
    text = answer.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return given_path(text)

LIVE_RATES = ("limits.upload_rate", "limits.download_rate")
FETCHED = "fetched"


# --- 1 Upload File -------------------------------------------------------------------------------------


def upload(session: Session) -> None:
    """Share a file or a folder: librarify it (progress bar), write its library, seed it."""
    config = session.config()
    while True:
        path = session.choose("Path of the file or folder to share (Tab completes; 'exit' to go back): ", typed_path)
        if path is None:
            return
        try:
            done = share_file(config, path, warn=lambda m: session.say(f"  warning: {printable(m)}", style="yellow"))
        except ShareError as exc:
            session.say(f"  {printable(exc)}", style="yellow")
            continue
        library = done.library
        session.log.info("library_shared", library=library.id_hex, name=library.name, size=library.size,
                         lib_path=str(done.lib_path), via="console")
        session.say(f"Library {library.id_hex}", style="bold green")
        if library.tree is not None:
            session.say(f"  {len(library.tree)} files in {printable(library.name)}/")
        session.say(f"  {printable(library.name)}: {human_bytes(library.size)} in {library.books} books, "
                    f"hashed in {done.seconds:.2f}s")
        session.say(f"  written to {printable(done.lib_path)}")
        if library.hubs:
            session.say(f"  link: {printable(links.of_library(library).text)}", style="bold")
            session.say("  seeding now; give that link (2 Download File takes it) or the .lib file to the players "
                        "that should download it")
        else:
            session.say("  seeding now; give that .lib file to the players that should download it")
        return


# --- 2 Download File -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A library in libs/ this player does not hold yet."""

    path: Path
    library: Library
    status: str  # "new" (not in state.db yet), FETCHED (by a link, in a temporary folder) or its state.db status


def pending_libraries(libs_dir: Path, known: dict[str, Status]) -> list[Candidate]:
    """Libraries in ``libs_dir`` that are not in state.db, or are there but not complete; by name."""
    found = []
    for path in sorted(libs_dir.glob("*.lib")):
        try:
            library = read_library(path)
        except LibraryError:
            continue  # the Requestor moves bad ones aside and logs why
        status = known.get(library.id_hex)
        if status not in (Status.SEEDING, Status.STOPPED):
            found.append(Candidate(path, library, status.value if status else "new"))
    return sorted(found, key=lambda c: (c.library.name, c.library.id_hex))


def _known(config: Config) -> dict[str, Status]:
    state = State(config.state_db)
    try:
        return {record.id: record.status for record in state.all()}
    finally:
        state.close()


def download(session: Session) -> None:
    """Pick a library from libs/ (or give a .lib path) and have the player download it."""
    config = session.config()
    candidates = pending_libraries(config.libs_dir, _known(config))
    if candidates:
        table = Table("#", "name", "size", "library id", "state",
                      title=Text(f"Libraries in {printable(config.libs_dir)}"))
        for number, c in enumerate(candidates, start=1):
            name, size = Text(printable(c.library.name)), human_bytes(c.library.size)
            table.add_row(str(number), name, size, c.library.id_hex[:16], c.status)
        session.out.print(table)
    else:
        session.say(f"No library waiting in {printable(config.libs_dir)}; give the path of a .lib file.")

    def choose(answer: str) -> Candidate:
        if links.is_link(answer):
            return _from_link(session, answer)
        if answer.isdigit():
            if not 1 <= int(answer) <= len(candidates):
                raise ValueError(f"no library number {answer}" + (f": 1 to {len(candidates)}" if candidates else ""))
            return candidates[int(answer) - 1]
        path = typed_path(answer)
        try:
            return Candidate(path, read_library(path), "new")
        except LibraryError as exc:
            raise ValueError(str(exc)) from None

    picked = session.choose("Library to download (number, path to a .lib, or a link; 'exit' to go back): ", choose)
    if picked is None:
        return
    client = session.client
    try:
        if picked.status in (Status.PAUSED.value, Status.ERROR.value):
            message = client.library(picked.library.id_hex, control_pb2.LibraryAction.RESUME)
        else:
            message = client.add(picked.path)
    finally:
        if picked.status == FETCHED:
            shutil.rmtree(picked.path.parent, ignore_errors=True)
    session.log.info("download_requested", library=picked.library.id_hex, name=picked.library.name, via="console")
    session.say(printable(message), style="green")
    session.say("  watch it with 3 View Download")


def _from_link(session: Session, text: str) -> Candidate:
    """The library of a link, fetched from a player its hubs name and checked against its id (ValueError if not),
    in a folder of its own until the player has taken it."""
    link = links.parse(text)
    session.say("  asking the link's hubs for a player that has it ...", style="dim")
    library = links.fetch(link, curve.load_or_create(session.data_dir), identity.player_id(session.data_dir))
    path = Path(tempfile.mkdtemp(prefix="emma-link-")) / library.file_name
    write_library(library, path)
    return Candidate(path, library, FETCHED)


# --- 6 Settings ----------------------------------------------------------------------------------------


def _effect(key: str) -> str:
    if key in LIVE_RATES:
        return "applied to the running player"
    if key.startswith("seeding."):
        return "the running player applies it within a second, to every library it seeds"
    if key.startswith("hub."):
        return "used by the libraries you share from now on (each library names its hubs)"
    if key == "security.players":
        return ("takes effect when the player restarts (Exit and stop it, then open the console again); "
                "later edits of the file's keys apply within a second")
    return "takes effect when the player restarts (Exit and stop it, then open the console again)"


def settings(session: Session) -> None:
    """Show the settings; change them one at a time, each validated before it is saved."""
    keys = list(SETTINGS)
    while True:
        config = session.config()
        table = Table("#", "setting", "value", "meaning", title="Settings")
        for number, key in enumerate(keys, start=1):
            table.add_row(str(number), key, Text(printable(config.get(key))), SETTINGS[key].help)
        session.out.print(table)
        session.say(f"data folder: {printable(config.data_dir)} (another one: `emma --data-dir DIR console`)",
                    style="dim")
        for line in key_lines(config.data_dir):
            session.say(line, style="dim")

        def choose(answer: str) -> str:
            if answer.isdigit() and 1 <= int(answer) <= len(keys):
                return keys[int(answer) - 1]
            if answer in SETTINGS:
                return answer
            raise ValueError(f"no setting {answer!r}: a number from 1 to {len(keys)}, or its name")

        picked = session.choose("Setting to change (number or name; 'exit' to go back): ", choose)
        if picked is None:
            return
        change(session, config, picked)


def change(session: Session, config: Config, key: str) -> None:
    """Ask for a new value until it validates and can work on this host (``usable.refuse``); save it and apply
    it where the player allows. ``default`` puts the default back (the downloads folder: <data>/downloads)."""
    default = SETTINGS[key].default
    while True:
        answer = session.ask(f"New value for {key} [{printable(config.get(key))}] (empty keeps it, 'default' is "
                             f"{printable(default) if default != '' else 'empty'}): ").strip()
        if not answer:
            return
        if answer.lower() == "default":
            given: object = default
        elif key.startswith("paths."):
            given = str(typed_path(answer))
        else:
            given = answer
        try:
            value = usable.set_checked(config, key, given)
            break
        except ConfigError as exc:
            session.say(f"  {printable(exc)}; try again", style="yellow")
    config.save()
    session.log.info("setting_changed", key=key, value=value, via="console")
    note = _effect(key)
    if key in LIVE_RATES:
        try:
            session.client.set_rates(config.get(LIVE_RATES[0]), config.get(LIVE_RATES[1]))
        except MaestroNotRunning:
            note = "saved; the player applies it when it starts"
    session.say(f"{key} = {printable(value)}: {note}", style="green")


# --- 7 About -------------------------------------------------------------------------------------------


def about(session: Session) -> None:
    session.out.print(Panel(Text("\n".join(about_lines(about_info(session.data_dir)))), expand=False))
