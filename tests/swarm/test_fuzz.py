"""A short run of tools/fuzz.py: hostile traffic at every socket of a hub and a player, then a download."""

from __future__ import annotations

import re

import pytest

from tools import fuzz


@pytest.mark.timeout(600)
def test_a_short_flood_crashes_restarts_and_bloats_nothing_and_a_download_still_completes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert fuzz.main(["--messages", "20000", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"sent 20,000 messages", out)
    for line in ("crashes: 0", "restarts: 0", "tracebacks: 0", "services over 256 MiB: 0",
                 "download after the flood: identical", "targets met"):
        assert line in out, out
    received = re.search(r"the hub received ([\d,]+) requests", out)
    assert received is not None and int(received.group(1).replace(",", "")) > 0
    for service in ("hub", "maestro", "distributor", "requestor"):
        assert re.search(rf"{service}\s+peak RSS\s+[\d.]+ MiB .* alive", out), out
