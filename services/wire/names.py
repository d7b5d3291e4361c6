"""Protocol enum values as the words logs show: ``periodic``, ``not found``, never ``ANNOUNCE_EVENT_UNSPECIFIED``.

Metrics labels keep the enum names (a scrape contract); what a person reads goes through here.
"""

from __future__ import annotations

from services.wire.pb import common_pb2, control_pb2, hub_pb2

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


# The word each DownloadState is shown as, by every command and screen and in --json output.
_DOWNLOAD_STATES: dict[control_pb2.DownloadState.ValueType, str] = {
    control_pb2.DOWNLOADING: "downloading", control_pb2.WAITING: "waiting", control_pb2.STALLED: "stalled",
    control_pb2.REFUSED: "refused", control_pb2.SEEDING: "seeding", control_pb2.PAUSED: "paused",
    control_pb2.FAILED: "error",
}
_DOWNLOAD_VALUES = {word: value for value, word in _DOWNLOAD_STATES.items()}


def download_state(state: control_pb2.DownloadState.ValueType) -> str:
    """``downloading``, ``waiting``, ``seeding``...; ``unknown`` for a state a newer player sends that this
    code does not know."""
    return _DOWNLOAD_STATES.get(state, "unknown")


def download_state_value(word: str) -> control_pb2.DownloadState.ValueType:
    """The DownloadState shown as ``word`` (one of ``download_state``'s words)."""
    return _DOWNLOAD_VALUES[word]
