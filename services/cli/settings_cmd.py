"""``emma settings show|set``: read and change config.toml with validation."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from services.cli.context import cli_context, fail
from services.cli.fmt import printable
from services.cli.keys_cmd import key_lines
from services.runtime import usable
from services.runtime.config import SETTINGS, ConfigError

settings_app = typer.Typer(help="View and change this player's settings.", no_args_is_help=True, rich_markup_mode=None)


@settings_app.command("show")
def show(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Print every setting with its value."""
    config = cli_context(ctx).config()
    for problem in usable.problems(config):
        typer.echo(f"warning: {printable(problem)}", err=True)
    values = config.as_dict()
    if json_out:
        typer.echo(json.dumps({"data_dir": str(config.data_dir), **values}))
        return
    typer.echo(f"data_dir{'':20} {printable(config.data_dir)}")
    for key, value in values.items():
        typer.echo(f"{key:28} {printable(value):20} {SETTINGS[key].help}")
    for line in key_lines(config.data_dir):
        typer.echo(line)


@settings_app.command("set")
def set_(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help=f"One of: {', '.join(SETTINGS)}.")],
    value: Annotated[str, typer.Argument(help="The new value.")],
) -> None:
    """Change one setting and save it; a value that cannot work on this host (a folder that cannot be written, an
    address not of this host, a port in use) is refused."""
    config = cli_context(ctx).config()
    try:
        checked = usable.set_checked(config, key, value)
    except ConfigError as exc:
        fail(str(exc))
    config.save()
    typer.echo(f"{key} = {printable(checked)}")
