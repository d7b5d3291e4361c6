"""What every CLI command gets from the top-level options: the data directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import typer

from services.cli.fmt import printable
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
    """Print a one-line error to stderr and exit non-zero (outside text in it escaped, so one line it stays)."""
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(code)


def cli_context(ctx: typer.Context) -> CliContext:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliContext):
        raise RuntimeError("CLI context missing: commands must run under services.cli.app")
    return obj
