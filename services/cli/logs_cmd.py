"""``emma logs``: the player's logs, newest last, levels coloured, optionally followed."""

from __future__ import annotations

import enum
import json
import time
from typing import Annotated

import typer
from rich.console import Console

from services.cli.context import cli_context
from services.cli.logs_view import Entry, Follower, level_rank, render
from services.runtime.logs import log_path

MAX_LINES = 1_000_000_000  # more than the logs ever hold (5 files of 10 MiB each): asking for more shows them all

FOLLOW_POLL = 0.2


class Kind(enum.StrEnum):
    events = "events"
    services = "services"
    debug = "debug"
    errors = "errors"


class Level(enum.StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"
    critical = "critical"


def logs(
    ctx: typer.Context,
    kind: Annotated[Kind, typer.Option(help="Which log: events (libraries, transfers), services (supervision), "
                                            "debug (everything), errors (warnings and errors).")] = Kind.events,
    level: Annotated[Level, typer.Option(help="Show this level and above.")] = Level.debug,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many of the last lines to show.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON lines (one object a line).")] = False,
) -> None:
    """Show this player's logs, newest last."""
    path = log_path(cli_context(ctx).data_dir, kind.value)
    rank = level_rank(level.value)
    out = Console(highlight=False, soft_wrap=True)
    if not path.exists():
        typer.echo(f"no {kind.value} log yet at {path}; it appears once the player runs (`emma peer --detach`)",
                   err=True)
    follower = Follower(path, rank)
    for entry in follower.backlog(min(lines, MAX_LINES)):
        _show(out, entry, json_out)
    if not follow:
        return
    try:
        while True:
            for entry in follower.poll():
                _show(out, entry, json_out)
            time.sleep(FOLLOW_POLL)
    except KeyboardInterrupt:
        return


def _show(out: Console, entry: Entry, json_out: bool) -> None:
    if json_out:
        print(json.dumps(entry.as_dict()), flush=True)
    else:
        out.print(render(entry))
