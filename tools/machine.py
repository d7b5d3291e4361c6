"""How busy this machine's cores were between two moments, from /proc/stat (the benchmarks' CPU measure)."""

from __future__ import annotations

import os
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_times() -> tuple[int, int]:
    """The machine's (busy, total) CPU ticks since boot, from /proc/stat (idle and iowait count as idle)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def busy_since(start: tuple[int, int]) -> tuple[float, float]:
    """Since ``start`` (a ``cpu_times()``): the share of the machine's CPU that was busy, 0..1 of all its cores,
    and the CPU-seconds its cores spent busy (every process)."""
    busy, total = cpu_times()
    return (busy - start[0]) / max(1, total - start[1]), (busy - start[0]) / TICKS_PER_SECOND
