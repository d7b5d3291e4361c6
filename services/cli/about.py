"""``emma about`` and the console's About screen: what Emma Torrent is, its version, where data lives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from services.cli.context import cli_context
from services.cli.fmt import printable
from services.runtime import config as config_mod
from services.runtime.version import PACKAGE, version

SUMMARY = ("Emma Torrent distributes large files peer to peer over ZeroMQ: a hub (tracker) tells players "
           "who has which library, and players trade verified books (pieces) directly with each other.")


def about_info(data_dir: Path) -> dict[str, str]:
    """Facts shown by ``emma about``: version and the places this player keeps its data."""
    try:
        config = config_mod.load(data_dir)
        downloads = str(config.downloads_dir)
    except config_mod.ConfigError as exc:
        downloads = f"unknown: {exc}"
    return {
        "name": "Emma Torrent",
        "package": PACKAGE,
        "version": version(),
        "summary": SUMMARY,
        "data_dir": str(data_dir),
        "config": str(data_dir / "config.toml"),
        "libraries": str(data_dir / "libs"),
        "downloads": downloads,
        "state": str(data_dir / "state.db"),
        "logs": str(data_dir / "logs"),
    }


def about_lines(info: dict[str, str]) -> list[str]:
    places = ("data_dir", "config", "libraries", "downloads", "state", "logs")
    return [f"{info['name']} {info['version']} ({info['package']})", info["summary"], "",
            *(f"{key:10} {printable(info[key])}" for key in places)]


def about(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """What Emma Torrent is, its version, and where this player's data lives."""
    info = about_info(cli_context(ctx).data_dir)
    if json_out:
        typer.echo(json.dumps(info))
        return
    for line in about_lines(info):
        typer.echo(line)
