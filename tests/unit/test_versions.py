"""A protocol's version: another minor version in the supported range is accepted, one outside it is
refused with an error naming both versions. Each side that checks (the peer wire, the hub, the control
socket) is tested in its own module: test_framing, test_hub_logic, test_control_logic."""

from __future__ import annotations

import pytest

from services.wire.errors import ErrorCode, ProtocolError
from services.wire.versions import Version

RANGE = Version("test", current=3, oldest=2, upgrade="other side")


@pytest.mark.parametrize("theirs", [2, 3, 4, 2**32 - 1])
def test_a_minor_version_from_the_oldest_up_is_accepted(theirs: int) -> None:
    RANGE.check(theirs)  # raises if refused


@pytest.mark.parametrize("theirs", [0, 1])
def test_a_version_below_the_oldest_is_refused_naming_both(theirs: int) -> None:
    with pytest.raises(ProtocolError) as info:
        RANGE.check(theirs)
    assert info.value.code == ErrorCode.UNSUPPORTED_VERSION
    message = info.value.message
    assert f"test version {theirs} " in message and "oldest supported 2" in message and "speaks 3" in message
    assert "upgrade the other side" in message
