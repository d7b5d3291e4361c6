"""The ``emma`` command line: one typer app; each command's module is imported only when that command runs.

``COMMANDS`` names every command, its module and the line ``emma --help`` shows for it, so
``emma --help`` and ``emma downloads`` import no more than they use (``tools/bench_startup.py``
measures it; a test checks each line against the command's own help).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from services.cli.context import CliContext, EmmaGroup, Lazy, fail
from services.cli.quick import warning_lines
from services.runtime import config as config_mod

_SWARM_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
COMMANDS = {
    "console": Lazy("services.cli.console", "console", "The interactive menu: upload, download, watch transfers, "
                                                      "logs, services, settings."),
    "share": Lazy("services.cli.lib_cmd", "share", "Librarify FILE (a file or a folder): write lib_<id>.lib and "
                                                  "seed it from this player."),
    "get": Lazy("services.cli.player_cmd", "get", "Download LIB (a .lib file, or a link from `emma link`) with the "
                                                  "running player."),
    "link": Lazy("services.cli.link_cmd", "link", "Print LIB as one copyable line: its id and hubs (with their keys)."),
    "downloads": Lazy("services.cli.player_cmd", "downloads", "Libraries this player downloads or seeds."),
    "pause": Lazy("services.cli.player_cmd", "pause", "Pause a download."),
    "resume": Lazy("services.cli.player_cmd", "resume", "Resume a paused download."),
    "remove": Lazy("services.cli.player_cmd", "remove", "Forget a library (downloaded files are kept)."),
    "services": Lazy("services.cli.player_cmd", "services", "The Maestro, Distributor and Requestor: state, pid, "
                                                            "uptime, restarts."),
    "metrics": Lazy("services.cli.player_cmd", "metrics", "The player's metrics once, as Prometheus would scrape "
                                                          "them."),
    "logs": Lazy("services.cli.logs_cmd", "logs", "Show this player's logs, newest last."),
    "hub": Lazy("services.cli.hub_cmd", "hub", "Run the hub: answers announces, peer lists, scrapes and reports on "
                                              "one ROUTER socket."),
    "about": Lazy("services.cli.about", "about", "What Emma Torrent is, its version, and where this player's "
                                                "data lives."),
    "swarm": Lazy("services.cli.swarm_cmd", "swarm", "Run a real local swarm (hub + players on 127.0.0.1).",
                  _SWARM_ARGS),
    "peer": Lazy("services.cli.player_cmd", "peer_app", "Run or stop this data directory's player (Maestro + "
                                                        "services)."),
    "settings": Lazy("services.cli.settings_cmd", "settings_app", "View and change this player's settings."),
    "lib": Lazy("services.cli.lib_cmd", "lib_app", "Inspect and verify library (.lib) files."),
    "keys": Lazy("services.cli.keys_cmd", "keys_app", "This player's keys: show them, or make new ones."),
}


class EmmaCli(EmmaGroup):
    lazy = COMMANDS


app = typer.Typer(
    name="emma",
    cls=EmmaCli,
    help="Emma Torrent: peer-to-peer distribution of large files.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from services.runtime.version import version  # importlib.metadata: only when asked

        typer.echo(f"emma {version()}")
        raise typer.Exit()

# Commands that must not trigger the silent first-run setup: they configure (the console asks
# its own questions), or need no config.
_NO_SETUP = {"settings", "lib", "hub", "console", "about", "logs", "swarm", "keys", "link"}
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
    folder = config_mod.given_path(data_dir or config_mod.default_data_dir())
    ctx.obj = CliContext(data_dir=folder)
    if config_mod.exists(folder):
        _warn_problems(ctx, folder)
    if ctx.invoked_subcommand in _NO_SETUP or config_mod.exists(folder):
        return
    from services.cli.setup import SetupLeft, interactive, run_setup  # first run only

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
    for line in warning_lines(folder):
        typer.echo(line, err=True)


def main() -> None:
    """Every command through typer (the `emma` console script is services/cli/__main__.py's ``main``)."""
    try:
        app(prog_name="emma")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
