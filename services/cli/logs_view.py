"""Reading a player's JSON-lines logs: parse, filter by level, render with colours, follow.

Plain functions and one small class (``Follower``) over a path; ``emma logs``
and the console's View Logs both print what these return.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text

from services.cli.fmt import printable

LEVELS = ("debug", "info", "warning", "error", "critical")
STYLES = {"debug": "dim", "info": "green", "warning": "yellow", "error": "bold red", "critical": "bold white on red"}
# Fields shown in their own column, or noise on every line.
_COLUMNS = {"timestamp", "level", "event", "process", "logger", "pid"}
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One log line; a line that is not a JSON object keeps its text as ``event``."""

    event: str
    level: str = ""
    timestamp: str = ""
    process: str = ""
    fields: dict[str, object] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        """Position in LEVELS (unknown levels count as info, ``exception`` as error)."""
        name = "error" if self.level == "exception" else self.level
        return LEVELS.index(name) if name in LEVELS else 1

    def as_dict(self) -> dict[str, object]:
        return {"timestamp": self.timestamp, "level": self.level, "process": self.process, "event": self.event,
                **self.fields}


def parse(line: str) -> Entry:
    text = line.rstrip("\n")
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        return Entry(event=text)
    extra = {k: v for k, v in raw.items() if k not in _COLUMNS}
    return Entry(event=str(raw.get("event", "")), level=str(raw.get("level", "")),
                 timestamp=str(raw.get("timestamp", "")), process=str(raw.get("process", "")), fields=extra)


def level_rank(name: str) -> int:
    """Rank of a level name for filtering; ValueError for an unknown name."""
    if name.lower() not in LEVELS:
        raise ValueError(f"unknown level {name!r}; choose one of: {', '.join(LEVELS)}")
    return LEVELS.index(name.lower())


def render(entry: Entry) -> Text:
    """``2026-01-02 10:11:12.345 INFO     maestro     service_spawned service=requestor pid=12``."""
    line = Text()
    if entry.timestamp:
        line.append(printable(entry.timestamp.replace("T", " ").removesuffix("Z")[:23]) + " ", style="dim")
    if entry.level:
        line.append(f"{printable(entry.level.upper()):8} ", style=STYLES.get(entry.level, ""))
    if entry.process:
        line.append(f"{printable(entry.process):11} ", style="cyan")
    line.append(printable(entry.event), style="bold" if entry.level else "")
    for key, value in entry.fields.items():
        shown = value if isinstance(value, str) and value and " " not in value else json.dumps(value)
        line.append(f" {printable(key)}=", style="dim")
        line.append(printable(shown))
    return line


class Follower:
    """Entries of a log file in order: ``backlog`` once, then ``poll`` for what was added since.

    Survives rotation (a new inode or a shorter file starts over) and a file that appears later.
    """

    def __init__(self, path: Path, min_rank: int = 0) -> None:
        self.path = path
        self.min_rank = min_rank
        self.inode = 0
        self.offset = 0
        self.partial = b""

    def backlog(self, count: int) -> list[Entry]:
        """The last ``count`` entries written so far; ``poll`` then returns only later ones."""
        kept: deque[Entry] = deque(maxlen=max(count, 0))
        while True:
            before = (self.inode, self.offset)
            kept.extend(self._read())
            if (self.inode, self.offset) == before:
                return list(kept)

    def poll(self) -> list[Entry]:
        """Entries added since the last call (at most about 1 MiB of them a call)."""
        return self._read()

    def _read(self) -> list[Entry]:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return []
        if info.st_ino != self.inode or info.st_size < self.offset:
            self.inode, self.offset, self.partial = info.st_ino, 0, b""
        if info.st_size == self.offset:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(_READ_CHUNK)
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        entries = [parse(raw.decode("utf-8", "replace")) for raw in lines if raw.strip()]
        return [e for e in entries if e.rank >= self.min_rank]
