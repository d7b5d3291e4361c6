"""This player's id: 16 bytes derived from its CURVE public key (see :func:`services.wire.curve.player_id_of`).

The hub binds each player record to the key of the connection that announced it, and checks
that the id a request names is the one this key derives: no player can announce, report or
remove under another's id. ``emma keys rotate`` therefore gives the player a new id too.
"""

from __future__ import annotations

from pathlib import Path

from services.wire import curve


def player_id(data_dir: Path) -> bytes:
    """The id of the player whose data directory is ``data_dir`` (its key pair is made on first use)."""
    return curve.player_id_of(curve.load_or_create(data_dir).public)
