"""The version of each protocol that crosses a process boundary, and which versions each side accepts.

Every message of the peer wire (``PeerMessage``), of the hub (``HubRequest``/``HubReply``)
and of the Maestro's control socket (``ControlRequest``/``ControlReply``) carries a
``version``: the minor version of that protocol within its protobuf package (the
``.v1`` of ``emma.wire.v1`` is the major). A minor version only adds fields and
values, which an older side reads as unknown and ignores, so a side accepts every
minor version from the ``oldest`` it still understands up, newer ones included; a
version below that (or none) is refused with an error naming both versions. A change
an older side could not read is a new major: a new package, not a higher number here.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.wire.errors import ErrorCode, ProtocolError


@dataclass(frozen=True)
class Version:
    protocol: str  # "peer wire", "hub", "control"
    current: int  # the minor version this side speaks
    oldest: int  # the oldest minor version this side still understands
    upgrade: str  # who to upgrade when the other side is too old

    def check(self, theirs: int) -> None:
        """Accept ``theirs`` (from the other side) or raise UNSUPPORTED_VERSION naming both versions."""
        if theirs < self.oldest:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"{self.protocol} version {theirs} is older than this side's oldest supported {self.oldest} "
                f"(it speaks {self.current}); upgrade the {self.upgrade}",
            )


WIRE = Version("peer wire", current=1, oldest=1, upgrade="other player")
HUB = Version("hub", current=2, oldest=1, upgrade="player")
CONTROL = Version("control", current=2, oldest=1, upgrade="emma command (the CLI) or restart the player")
