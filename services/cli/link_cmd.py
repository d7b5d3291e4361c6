"""``emma link LIB``: the one line that shares a library (``emma get LINK`` downloads from it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from services.cli.context import fail
from services.cli.fmt import printable
from services.peer import links
from services.peer.library import LibraryError, read_library


def link(
    lib: Annotated[Path, typer.Argument(help="The .lib file of the library to share.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Print LIB as one copyable line: its id and hubs (with their keys). `emma get LINK` downloads it."""
    try:
        library = read_library(lib)
    except LibraryError as exc:
        fail(str(exc))
    if not library.hubs:
        fail(f"{library.name} names no hub; a link needs one (share it again with hubs set)")
    text = links.of_library(library).text
    if json_out:
        typer.echo(json.dumps({"id": library.id_hex, "name": library.name, "link": text}))
    else:
        typer.echo(printable(text))
