"""Formatting shared by the commands and the console: sizes, durations, service states."""

from __future__ import annotations

from services.wire.pb import control_pb2

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


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


def state_name(state: int) -> str:
    """A ServiceState number as its name (RUNNING, OFF, ...)."""
    return control_pb2.ServiceState.Name(state)  # type: ignore[arg-type]


def progress_percent(have: int, total: int) -> float:
    return round(100.0 * have / total, 1) if total else 100.0


def download_state(item: control_pb2.Download) -> str:
    """``downloading``, or with its reason: ``stalled: no source for 3 books``."""
    return f"{item.state}: {item.detail}" if item.detail else item.state
