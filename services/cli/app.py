"""The ``emma`` command line: one typer app, commands registered from their modules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from services.cli import (
    about,
    console,
    hub_cmd,
    keys_cmd,
    lib_cmd,
    link_cmd,
    logs_cmd,
    player_cmd,
    settings_cmd,
    swarm_cmd,
)
from services.cli.context import CliContext, fail
from services.cli.setup import interactive, run_setup
from services.runtime import config as config_mod

app = typer.Typer(
    name="emma",
    help="Emma Torrent: peer-to-peer distribution of large files.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Commands that must not trigger the silent first-run setup: they configure (the console asks
# its own questions), or need no config.
_NO_SETUP = {"settings", "lib", "hub", "console", "about", "logs", "swarm", "keys", "link"}


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Player data directory (default: $EMMA_DATA_DIR or ~/.emma)."),
    ] = None,
) -> None:
    """Emma Torrent: share a file with `emma share`, run a player with `emma peer`."""
    folder = (data_dir or config_mod.default_data_dir()).expanduser().absolute()
    ctx.obj = CliContext(data_dir=folder)
    if ctx.invoked_subcommand in _NO_SETUP or config_mod.exists(folder):
        return
    try:
        config = config_mod.load(folder)
        if interactive():
            typer.echo("First run: let's set up this player.")
            run_setup(config, ask=input, say=typer.echo)
        else:
            config.save()
    except config_mod.ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write settings in {folder}: {exc.strerror or exc}")
    except (EOFError, KeyboardInterrupt):
        fail("setup interrupted; nothing saved")


app.command("console")(console.console)
app.command("share")(lib_cmd.share)
app.command("get")(player_cmd.get)
app.command("link")(link_cmd.link)
app.command("downloads")(player_cmd.downloads)
app.command("pause")(player_cmd.pause)
app.command("resume")(player_cmd.resume)
app.command("remove")(player_cmd.remove)
app.add_typer(player_cmd.peer_app, name="peer")
app.command("services")(player_cmd.services)
app.command("metrics")(player_cmd.metrics)
app.command("logs")(logs_cmd.logs)
app.add_typer(settings_cmd.settings_app, name="settings")
app.add_typer(lib_cmd.lib_app, name="lib")
app.add_typer(keys_cmd.keys_app, name="keys")
app.command("hub", help="Run the hub (tracker) in the foreground.")(hub_cmd.hub)
app.command("about")(about.about)
app.command("swarm", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                       "help_option_names": []})(swarm_cmd.swarm)


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="emma")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
