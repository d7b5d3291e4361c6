"""``emma swarm``: run the local swarm script (tools/swarm.py) of a source checkout.

tools/ is not part of the installed package, so this command looks for
``tools/swarm.py`` next to the ``services`` package (an editable or source
install) and then in the current directory, and runs it with this Python,
passing every argument through. Without a checkout it exits 2 and says so.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

import services
from services.cli.context import fail

SCRIPT = Path("tools") / "swarm.py"


def find_script() -> Path | None:
    """tools/swarm.py of the checkout this package runs from, else of the current directory."""
    roots = [Path(services.__file__).resolve().parent.parent, Path.cwd()]
    return next((root / SCRIPT for root in roots if (root / SCRIPT).is_file()), None)


def swarm(ctx: typer.Context) -> None:
    """Run a real local swarm (hub + players on 127.0.0.1); options go to tools/swarm.py (try --help)."""
    script = find_script()
    if script is None:
        fail("tools/swarm.py not found: the swarm script ships with the source checkout, not the installed "
             "package; run `emma swarm` from the repository")
    proc = subprocess.Popen([sys.executable, str(script), *ctx.args])
    while True:
        try:
            raise typer.Exit(proc.wait())
        except KeyboardInterrupt:
            continue  # the script got the same Ctrl-C: let it end the processes it started
