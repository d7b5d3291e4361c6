"""What every CLI command gets from the top-level options (the data directory), and how it fails.

Every error, a usage error included, is one line: ``error: what; what to do`` on stderr, or
with ``--json`` one ``{"error": ...}`` object on stdout, and a non-zero exit.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import typer
import typer.main
from typer._click import core as click_core
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer._click.formatting import HelpFormatter
from typer._click.globals import get_current_context
from typer.core import TyperGroup

from services.cli.fmt import say_error
from services.cli.quick import hoist_data_dir
from services.runtime import config as config_mod


@dataclass
class CliContext:
    data_dir: Path

    def config(self) -> config_mod.Config:
        """Load this data directory's config, or exit 2 with the reason."""
        try:
            return config_mod.load(self.data_dir)
        except config_mod.ConfigError as exc:
            fail(str(exc))


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error to stderr and exit non-zero (outside text in it escaped, so one line it stays);
    under a command given ``--json``, a JSON object on stdout instead."""
    say_error(message, as_json=_json_asked())
    raise typer.Exit(code)


def _json_asked() -> bool:
    ctx = get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get("json_out"):
            return True
        ctx = ctx.parent
    return False


@dataclass(frozen=True)
class Lazy:
    """A command (a function, or a Typer of subcommands) that lives in ``module`` as ``attr``, imported only
    when it runs; ``summary`` is its line in ``emma --help``."""

    module: str
    attr: str
    summary: str
    context_settings: dict[str, Any] | None = None

    def load(self, name: str) -> click_core.Command:
        target = getattr(importlib.import_module(self.module), self.attr)
        if isinstance(target, typer.Typer):
            command = typer.main.get_command(target)
        else:
            single = typer.Typer(rich_markup_mode=None)
            single.command(name, context_settings=self.context_settings)(target)
            command = typer.main.get_command(single)
        command.name = name
        return command


class EmmaGroup(TyperGroup):
    """The ``emma`` command group: usage errors as one ``error:`` line (not a box), bare ``emma`` as help with
    exit 0, ``--data-dir`` anywhere before ``--``, and the commands of ``lazy`` imported when they run."""

    lazy: ClassVar[dict[str, Lazy]] = {}

    def list_commands(self, ctx: click_core.Context) -> list[str]:
        return [*super().list_commands(ctx), *self.lazy]

    def get_command(self, ctx: click_core.Context, cmd_name: str) -> click_core.Command | None:
        spec = self.lazy.get(cmd_name)
        return spec.load(cmd_name) if spec is not None else super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click_core.Context, formatter: HelpFormatter) -> None:
        """The command list from the summaries, without importing any command."""
        rows = [(name, spec.summary) for name, spec in self.lazy.items()]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        argv = hoist_data_dir(sys.argv[1:] if args is None else args)
        as_json = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv
        try:
            code = super().main(argv or ["--help"], prog_name, complete_var, standalone_mode=False,
                                windows_expand_args=windows_expand_args, **extra)
        except NoArgsIsHelpError as exc:  # `emma settings`: the help of that group
            typer.echo(exc.format_message())
            code = 0
        except ClickException as exc:
            say_error(_usage_message(exc), as_json=as_json)
            code = exc.exit_code
        except typer.Abort:
            code = 130
        except OSError as exc:  # the disk said no where no command expected it (a full or read-only data folder)
            say_error(os_error_message(exc), as_json=as_json)
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def os_error_message(exc: OSError) -> str:
    """An OSError no command caught, as one line: what the system refused, on which file, and where to look."""
    where = f" {exc.filename}" if exc.filename is not None else ""
    return f"the system refused{where}: {exc.strerror or exc}; check that folder's permissions and free space"


def _usage_message(exc: ClickException) -> str:
    """The error, and where the help is: ``no such option: --colour; see `emma share --help```."""
    message = exc.format_message().replace("Value error, ", "").rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, UsageError) and ctx is not None:
        return f"{message[:1].lower()}{message[1:]}; see `{ctx.command_path} --help`"
    return message


def cli_context(ctx: typer.Context) -> CliContext:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliContext):
        raise RuntimeError("CLI context missing: commands must run under services.cli.app")
    return obj
