"""Secret files of a data directory (the CURVE key pair, the publisher key): written whole, 0600, at once.

``write_secret`` writes the text to a private temporary file (0600 from its
creation, never readable by others for a moment), syncs it, then either
replaces the file or, for a first run, links it in only if nothing is there
yet: two first runs at once agree on one key (the loser reads the winner's).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_secret(path: Path, text: str, *, replace: bool) -> None:
    """Write ``text`` (ASCII) as the whole of ``path``, mode 0600; keep an existing file unless ``replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # first writer wins
            except FileExistsError:
                pass
    finally:
        tmp.unlink(missing_ok=True)
