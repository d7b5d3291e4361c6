"""The installed Emma Torrent version: what ``emma about`` shows and libraries name as their creator."""

from __future__ import annotations

from importlib import metadata

PACKAGE = "emma-torrent"


def version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"
