"""The ``emma`` console script (and ``python -m services.cli``): ``emma downloads`` is answered before typer
is imported (see quick.py); every other command goes to the typer app (services/cli/app.py)."""

from __future__ import annotations

import sys


def main() -> None:
    from services.cli import quick

    code = quick.answer(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from services.cli import app

    app.main()


if __name__ == "__main__":
    main()
