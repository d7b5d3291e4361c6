"""Sizes and rates as people write them: ``500K``, ``1.5M``, ``2G``, ``64MiB``, ``20M/s``.

The one parser of unit suffixes: settings (``limits.upload_rate 500K``), command options
(``emma share --book-size 4M``) and the tools (``tools/swarm.py``, the simulator) all use it.
K, M, G and T are binary (1024-based), as the sizes this project prints (KiB, MiB) are; a
trailing ``B``, ``iB`` or ``/s`` is allowed and ignored. A plain number is bytes.
"""

from __future__ import annotations

import math
import re

_SCALE = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([KMGT]?)(?:I?B)?(?:/S)?")
EXAMPLES = "500K, 1.5M, 2G or a number of bytes"


class UnitError(ValueError):
    """Text that is not a size or rate; the message says how to write one."""


def parse_size(text: str) -> int:
    """``'1.5M'`` -> 1572864; ``'64MiB'``, ``'500k'``, ``'20M/s'``, ``'4096'`` too (whole bytes, rounded down)."""
    clean = text.strip().upper() if isinstance(text, str) else ""
    shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:40] + "..."
    match = _SIZE.fullmatch(clean)
    if not match:
        raise UnitError(f"not a size: {shown}; write {EXAMPLES}")
    value = float(match.group(1)) * _SCALE[match.group(2)]
    if not math.isfinite(value):
        raise UnitError(f"too large: {shown}")
    return int(value)
