"""``emma downloads``, answered before typer is imported, and the pieces it shares with the typer command.

A person runs ``emma downloads`` over and over (``watch emma downloads``, a script's loop), so it
must answer at once (issue 17: within 0.2 s of the interpreter's own start). Typer and the click it
vendors take about 80 ms to import, more than the command's own work; so ``app.main`` offers the
arguments to ``answer`` first. It answers only arguments it reads whole -- ``downloads``, with
``--json`` and ``--data-dir DIR`` before or after the command -- for a data directory that has
settings, and says exactly what the typer command says (the typer command calls ``downloads`` here,
and tests/cli/test_cli_quick.py runs both ways on the same arguments). Anything else (help, a
usage error, a first run that sets the player up) goes to typer.

This module imports no typer, and zmq and protobuf only when it asks the Maestro.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from services.cli.fmt import (
    download_state,
    human_bytes,
    human_eta,
    human_rate,
    human_ratio,
    printable,
    progress_percent,
    say_error,
    state_word,
)

if TYPE_CHECKING:
    from services.runtime.config import Config
    from services.wire.pb import control_pb2

DATA_DIR = "--data-dir"
PASS_THROUGH = {"swarm"}  # commands whose arguments are another program's
START_HINT = "start one with `emma peer --detach`"
NO_LIBRARIES = "no libraries yet: `emma get LIB` or `emma share FILE`"


def hoist_data_dir(args: Sequence[str]) -> list[str]:
    """``emma downloads --data-dir D`` as ``emma --data-dir D downloads``: the option may follow the command.
    Arguments after ``--`` and those of a pass-through command are left alone."""
    args = list(args)
    command = next((a for a in args if not a.startswith("-")), None)
    if command in PASS_THROUGH:
        return args
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg == DATA_DIR and i + 1 < len(args):
            front += args[i:i + 2]
            i += 2
            continue
        if arg.startswith(DATA_DIR + "="):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def read(argv: Sequence[str]) -> tuple[str | None, bool] | None:
    """``(data dir given or None, --json)`` when ``argv`` is a plain ``emma downloads``; None for anything else."""
    args = hoist_data_dir(argv)
    data_dir: str | None = None
    if len(args) >= 2 and args[0] == DATA_DIR:
        data_dir, args = args[1], args[2:]
    elif args and args[0].startswith(DATA_DIR + "="):
        data_dir, args = args[0].partition("=")[2], args[1:]
    if data_dir is not None and (not data_dir or data_dir.startswith("-")):
        return None  # typer's to read (or to refuse)
    if args == ["downloads"]:
        return data_dir, False
    if args == ["downloads", "--json"]:
        return data_dir, True
    return None


def answer(argv: Sequence[str]) -> int | None:
    """The exit code of ``emma downloads`` answered here, or None: typer answers ``argv``."""
    asked = read(argv)
    if asked is None:
        return None
    from services.runtime import config as config_mod

    given, as_json = asked
    folder = config_mod.given_path(given if given is not None else config_mod.default_data_dir())
    if not config_mod.exists(folder):
        return None  # a first run: typer's root sets the player up
    try:
        config = config_mod.load(folder)
    except config_mod.ConfigError as exc:
        say_error(str(exc), as_json=as_json)
        return 2
    for line in problem_lines(config):
        print(line, file=sys.stderr)
    return downloads(config.run_dir, as_json)


def warning_lines(folder: Path) -> list[str]:
    """A setting of ``folder``'s config that stopped working here, as one ``warning:`` line each, saying how to fix
    it; none when the config cannot be read (the command says so, in its own one line)."""
    from services.runtime import config as config_mod

    try:
        return problem_lines(config_mod.load(folder))
    except config_mod.ConfigError:
        return []


def problem_lines(config: Config) -> list[str]:
    from services.runtime import usable

    return [f"warning: {printable(problem)}" for problem in usable.problems(config)]


def downloads(run_dir: Path, as_json: bool) -> int:
    """Ask the Maestro of ``run_dir`` for its downloads and print them (a table, or JSON); the exit code."""
    from services.supervisor.control_client import ControlClient, ControlError, MaestroNotRunning

    client = ControlClient(run_dir)
    try:
        items = client.downloads()
        statuses = [] if as_json or not items else client.services()
    except MaestroNotRunning as exc:
        say_error(f"{exc}; {exc.hint or START_HINT}", as_json=as_json)
        return 2
    except ControlError as exc:
        say_error(f"downloads: {exc}", as_json=as_json)
        return 2
    if as_json:
        print(json.dumps(download_rows(items)))
    else:
        print("\n".join(download_table(items, statuses)))
    return 0


def download_rows(items: list[control_pb2.Download]) -> list[dict[str, object]]:
    """The JSON of `emma downloads --json`: full ids, bytes and bytes/s, seconds; ``since`` in unix seconds."""
    return [{"id": d.library_id, "name": d.name, "size": d.size, "books": d.books_total, "have": d.books_have,
             "progress": progress_percent(d.books_have, d.books_total),
             "download_rate": round(d.download_rate), "upload_rate": round(d.upload_rate), "peers": d.peers,
             "state": state_word(d.state), "detail": d.detail, "since": round(d.since) if d.since else None,
             "eta": round(d.eta) if d.eta else None, "downloaded": d.downloaded, "uploaded": d.uploaded,
             "ratio": round(d.ratio, 3), "path": d.path, "files": d.files_total,
             "files_selected": d.files_selected} for d in items]


def download_table(items: list[control_pb2.Download], statuses: list[control_pb2.ServiceStatus]) -> list[str]:
    """`emma downloads` as text: a row per library, then a warning if no one can reach this player."""
    if not items:
        return [NO_LIBRARIES]
    lines = [f"{'id':12} {'name':20} {'size':>9} {'done':>6} {'down':>10} {'up':>10} {'eta':>6} "
             f"{'got':>9} {'sent':>9} {'ratio':>5} {'peers':>5}  state"]
    for d in items:
        lines.append(f"{printable(d.library_id[:12]):12} {printable(d.name)[:20]:20} {human_bytes(d.size):>9} "
                     f"{progress_percent(d.books_have, d.books_total):>5}% {human_rate(d.download_rate):>10} "
                     f"{human_rate(d.upload_rate):>10} {human_eta(d.eta):>6} {human_bytes(d.downloaded):>9} "
                     f"{human_bytes(d.uploaded):>9} {human_ratio(d.ratio):>5} {d.peers:>5}  {download_state(d)}")
    lines += [f"warning: {printable(warning)}" for warning in reachability_warnings(statuses)]
    return lines


def reachability_warnings(statuses: list[control_pb2.ServiceStatus]) -> list[str]:
    """A distributor the hub cannot connect to serves nobody: say so wherever downloads are listed."""
    return [f"{s.name} {s.detail}" for s in statuses if s.name == "distributor" and s.detail.startswith("unreachable")]
