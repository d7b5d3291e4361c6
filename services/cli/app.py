"""The ``emma`` command line: one typer app, commands registered from their modules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from services.cli import about, console, hub_cmd, keys_cmd, lib_cmd, logs_cmd, player_cmd, settings_cmd, swarm_cmd
from services.cli.context import CliContext, EmmaGroup, fail
from services.cli.fmt import printable
from services.cli.setup import SetupLeft, interactive, run_setup
from services.runtime import config as config_mod
from services.runtime import usable
from services.runtime.version import version

app = typer.Typer(
    name="emma",
    cls=EmmaGroup,
    help="Emma Torrent: peer-to-peer distribution of large files.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"emma {version()}")
        raise typer.Exit()

# Commands that must not trigger the silent first-run setup: they configure (the console asks
# its own questions), or need no config.
_NO_SETUP = {"settings", "lib", "hub", "console", "about", "logs", "swarm", "keys"}
# Commands of this player that warn about a setting that no longer works here.
# (`settings show` warns itself; `settings set` is how to fix it.)
_WARNS = {"share", "get", "downloads", "pause", "resume", "remove", "peer", "services"}


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", metavar="DIR", help="Player data directory (default: $EMMA_DATA_DIR or ~/.emma); "
                     "may also follow the command."),
    ] = None,
    show_version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit.")
    ] = False,
) -> None:
    """Emma Torrent: share a file with `emma share`, run a player with `emma peer`."""
    folder = (data_dir or config_mod.default_data_dir()).expanduser().absolute()
    ctx.obj = CliContext(data_dir=folder)
    if config_mod.exists(folder):
        _warn_problems(ctx, folder)
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
    except (EOFError, KeyboardInterrupt, SetupLeft):
        fail("setup left; nothing saved (it asks again next time)")


def _warn_problems(ctx: typer.Context, folder: Path) -> None:
    """A setting that stopped working here is one ``warning:`` line on stderr, saying how to fix it; the command
    runs anyway (the console shows the same lines itself)."""
    if ctx.invoked_subcommand not in _WARNS:
        return
    try:
        found = usable.problems(config_mod.load(folder))
    except config_mod.ConfigError:
        return  # the command says so, in its own one line
    for problem in found:
        typer.echo(f"warning: {printable(problem)}", err=True)


app.command("console")(console.console)
app.command("share")(lib_cmd.share)
app.command("get")(player_cmd.get)
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
