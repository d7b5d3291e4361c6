"""Formatting shared by the commands and the console: sizes, durations, service states, outside text.

Text that comes from outside (names and hubs in a .lib, paths, reasons a peer or the
Maestro gives, log fields) goes through ``printable`` before it reaches a terminal, so an
escape sequence or a newline in it is shown, not obeyed.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.wire.pb import control_pb2

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object) -> str:
    """``text`` safe to print: every character that is not printable is shown as an escape.

    ESC, newline and other controls, bidirectional and other format characters, separators
    other than the plain space, and lone surrogates (file names that are not UTF-8) become
    ``\\x1b``, ``\\n``, ``\\u202e``, ``\\udcff``. Printable text comes back unchanged.
    """
    shown = str(text)
    if shown.isprintable():
        return shown
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in shown)


def say_error(message: str, *, as_json: bool) -> None:
    """An error as every command says it: ``error: ...`` on stderr, or under ``--json`` one object on stdout."""
    if as_json:
        print(json.dumps({"error": message}), flush=True)
    else:
        print(f"error: {printable(message)}", file=sys.stderr, flush=True)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def utc_time(seconds: int) -> str:
    """Unix seconds as ``2026-01-02 10:11:12 UTC``; ``unknown (N)`` for a time no calendar shows."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return f"unknown ({seconds})"


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; whole bytes below 1 KiB."""
    value, unit = float(n), _UNITS[0]
    for bigger in _UNITS[1:]:
        if abs(value) < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"


def human_rate(n: float) -> str:
    return f"{human_bytes(n)}/s" if n >= 1 else "-"


def human_seconds(seconds: float) -> str:
    """3725 -> '1h02m05s'; '-' for a negative or zero age."""
    if seconds <= 0:
        return "-"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{seconds:.1f}s"


def human_eta(seconds: float) -> str:
    """Time left, to the minute once it is long: '45s', '12m05s', '3h07m', '2d04h'; '-' when unknown."""
    if seconds <= 0:
        return "-"
    whole = int(seconds + 0.5)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def human_ratio(ratio: float) -> str:
    return f"{ratio:.2f}"


def state_name(state: int) -> str:
    """A ServiceState number as its name (RUNNING, OFF, ...)."""
    from services.wire.pb import control_pb2  # protobuf: only for the commands that show services

    return control_pb2.ServiceState.Name(state)  # type: ignore[arg-type]


def progress_percent(have: int, total: int) -> float:
    return round(100.0 * have / total, 1) if total else 100.0


def state_word(state: control_pb2.DownloadState.ValueType) -> str:
    """The word a download's state is shown as (see ``services.wire.names.download_state``)."""
    from services.wire import names  # protobuf: only for the commands that show downloads

    return names.download_state(state)


def download_state(item: control_pb2.Download) -> str:
    """``downloading``, or with its reason: ``stalled: no source for 3 books`` (escaped to print); of a
    selection of a tree's files, how many: ``seeding (3/10 files)``."""
    word = state_word(item.state)
    state = f"{word}: {item.detail}" if item.detail else word
    if item.files_selected != item.files_total:
        state += f" ({item.files_selected}/{item.files_total} files)"
    return printable(state)
