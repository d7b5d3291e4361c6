"""``emma keys show|rotate``: this player's CURVE key (its identity on every link) and publisher key.

The secret halves stay in the data directory (``curve.key``, ``publisher.key``, 0600) and are
never printed. A private swarm's allowlists hold the CURVE public keys of its players; trusted
publisher files hold publisher keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from services.cli.context import cli_context, fail
from services.peer import signing
from services.wire import curve

keys_app = typer.Typer(help="This player's keys: show them, or make new ones.", no_args_is_help=True,
                       rich_markup_mode=None)


def public_keys(data_dir: Path) -> tuple[str, str]:
    """The player's CURVE public key (Z85) and publisher key (hex), made on first use."""
    return curve.load_or_create(data_dir).public.decode(), signing.load_publisher(data_dir).public.hex()


def key_lines(data_dir: Path) -> list[str]:
    """The player's public keys as the CLI and the console show them (made on first use)."""
    try:
        player, publisher = public_keys(data_dir)
    except (curve.CurveKeyError, signing.SignatureError) as exc:
        return [f"keys: {exc}"]
    except OSError as exc:
        return [f"keys: cannot make keys in {data_dir}: {exc.strerror or exc}"]
    return [f"this player's key: {player}  (what a private swarm's allowlist lists)",
            f"publisher key: {publisher}  (what trusted publishers files list)"]


@keys_app.command("show")
def show(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Print this player's public keys (made on first use)."""
    data_dir = cli_context(ctx).data_dir
    try:
        player, publisher = public_keys(data_dir)
    except (curve.CurveKeyError, signing.SignatureError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot make keys in {data_dir}: {exc.strerror or exc}")
    if json_out:
        typer.echo(json.dumps({"player_key": player, "publisher_key": publisher}))
        return
    typer.echo(f"player key     {player}")
    typer.echo(f"publisher key  {publisher}")


@keys_app.command("rotate")
def rotate(
    ctx: typer.Context,
    publisher: Annotated[bool, typer.Option("--publisher", help="Replace the publisher key instead.")] = False,
) -> None:
    """Replace the player's key pair (or, with --publisher, its publisher key); the old one is gone."""
    data_dir = cli_context(ctx).data_dir
    try:
        if publisher:
            key = signing.rotate_publisher(data_dir).public.hex()
            typer.echo(f"publisher key  {key}")
            typer.echo("libraries you share from now on are signed with it; players that trust your old key "
                       "need this one in their trusted publishers file")
            return
        pair = curve.rotate(data_dir)
    except OSError as exc:
        fail(f"cannot write keys in {data_dir}: {exc.strerror or exc}")
    typer.echo(f"player key     {pair.public.decode()}")
    typer.echo("restart the player to use it (`emma peer stop`, then `emma peer start`); private swarms must "
               "list the new key in their allowlists, and the old one should come out")
