"""The one parser of sizes and rates with unit suffixes."""

from __future__ import annotations

import pytest

from services.runtime.units import UnitError, parse_size


@pytest.mark.parametrize(
    ("text", "value"),
    [("4096", 4096), ("500K", 500 << 10), ("500k", 500 << 10), ("1.5M", 3 << 19), ("2G", 2 << 30), ("1T", 1 << 40),
     ("64MiB", 64 << 20), ("64MB", 64 << 20), ("20M/s", 20 << 20), (" 1.5 m ", 3 << 19), (".5K", 512), ("0", 0)],
)
def test_sizes(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "-1", "1e3", "abc", "1.2.3", "1X", "M", "1 000", "9" * 400 + "T"])
def test_not_sizes_say_how_to_write_one(text: str) -> None:
    with pytest.raises(UnitError, match=r"500K, 1\.5M, 2G|too large"):
        parse_size(text)
