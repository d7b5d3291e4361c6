"""This player's id: 16 random bytes made once per data directory."""

from __future__ import annotations

import os
from pathlib import Path

from services.wire.ids import PLAYER_ID_LEN


def player_id(data_dir: Path) -> bytes:
    """Read ``<data>/player_id``, creating it on first use (atomically)."""
    path = data_dir / "player_id"
    try:
        raw = bytes.fromhex(path.read_text().strip())
        if len(raw) == PLAYER_ID_LEN:
            return raw
    except (OSError, ValueError):
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    fresh = os.urandom(PLAYER_ID_LEN)
    tmp = path.with_name(f".player_id.{os.getpid()}")
    tmp.write_text(fresh.hex())
    try:
        os.link(tmp, path)  # first writer wins; a concurrent process reads the winner
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return bytes.fromhex(path.read_text().strip())
