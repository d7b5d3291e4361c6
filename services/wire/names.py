"""Protocol enum values as the words logs show: ``periodic``, ``not found``, never ``ANNOUNCE_EVENT_UNSPECIFIED``.

Metrics labels keep the enum names (a scrape contract); what a person reads goes through here.
"""

from __future__ import annotations

from services.wire.pb import common_pb2, hub_pb2

_ANNOUNCE: dict[int, str] = {value: name.lower() for name, value in hub_pb2.AnnounceEvent.items()}
_ANNOUNCE[hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED] = "periodic"  # the regular re-announce carries no event


def announce_event(event: int) -> str:
    """``started``, ``completed``, ``stopped`` or ``periodic``."""
    return _ANNOUNCE.get(event, f"event {event}")


def error_code(code: int) -> str:
    """``not found``, ``invalid argument``... (``code 99`` for one this version does not know)."""
    try:
        return common_pb2.ErrorCode.Name(code).lower().replace("_", " ")  # type: ignore[arg-type]
    except ValueError:
        return f"code {code}"
