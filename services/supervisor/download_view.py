"""How the Maestro shows one library: its state word and the reason, current rates, ETA, totals, ratio.

Plain functions and one small class fed ``now``; no sockets. ``ControlLogic.downloads``
builds each ``Download`` row from a state.db record, what the Requestor's last
heartbeat said of it (``Live``) and the library's hubs, through these.

States, as lower-case words (``state_word`` is the one mapping from a record's
status and what is live to the word shown everywhere):

- ``downloading``: fetching from at least one peer.
- ``waiting``: not fetching yet: asking the hub (``asking the hub tcp://...``), the hub
  does not answer (``hub tcp://... unreachable since 02:51:03 UTC``; ``since`` holds the
  time), or it answered but no player serves the library yet (``no peers yet``; the hub named
  nobody, or those it named did not answer yet).
- ``stalled``: books that no known source holds (``no source for 3 books``).
- ``refused``: the hub or peers refused this player's key.
- ``seeding``: complete and served.
- ``paused``: paused by the user; a complete one is not served (``complete; not seeding``),
  or a seeding limit stopped it (the limit is the reason).
- ``error``: what went wrong and what to do, as the Requestor recorded it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from services.peer.state import LibraryRecord, Status

RATE_WINDOW = 5.0  # a rate is measured over the samples of the last this many seconds
RATE_MIN_SPAN = 0.5  # ... once they span at least this long


@dataclass(frozen=True)
class Live:
    """What the Requestor's last heartbeat said of one download (all zero: nothing yet)."""

    peers: int = 0
    stalled: int = 0  # missing books no source holds
    refused: int = 0  # 1 its hubs, plus 2 per peer
    hub_answered: bool = False  # a hub answered at least once
    hub_named_nobody: bool = False  # ... and its last answer named no other player
    hub_down_since: float = 0.0  # time.monotonic() when its hubs stopped answering (0: they answer)


@dataclass(frozen=True)
class Shown:
    state: str
    detail: str = ""
    since: float = 0.0  # unix seconds the state began, when known


def state_word(record: LibraryRecord, live: Live, hubs: tuple[str, ...], *, wall: float | None = None,
               mono: float | None = None) -> Shown:
    """The state of a library as shown, with its reason."""
    status = record.status
    if status is Status.ERROR:
        return Shown("error", record.reason or "see `emma logs errors`, then `emma resume`")
    if status is Status.STOPPED:
        return Shown("paused", record.reason or "complete; not seeding (`emma resume` seeds it again)")
    if status is Status.PAUSED:
        return Shown("paused")
    if status is Status.SEEDING:
        return Shown("seeding")
    if live.refused:
        return Shown("refused", _refusal(live.refused))
    named = ", ".join(hubs) if hubs else "(the library lists none)"
    if live.hub_down_since:
        wall = time.time() if wall is None else wall
        mono = time.monotonic() if mono is None else mono
        since = wall - max(0.0, mono - live.hub_down_since)
        return Shown("waiting", f"hub {named} unreachable since {_clock(since)}", since)
    if not live.hub_answered:
        return Shown("waiting", f"asking the hub {named}")
    if live.hub_named_nobody and not live.peers:
        return Shown("waiting", "no peers yet: the hub knows no other player of this library")
    if live.stalled:
        return Shown("stalled", f"no source for {live.stalled} book{'s' if live.stalled != 1 else ''}")
    if not live.peers:
        return Shown("waiting", "no peers yet")
    return Shown("downloading")


def _clock(unix: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(unix))


def _refusal(refused: int) -> str:
    """What the requestor's refused counter says (1: the hubs, plus 2 per peer)."""
    peers = refused // 2
    who = (["hub"] if refused & 1 else []) + ([f"{peers} peer{'s' if peers != 1 else ''}"] if peers else [])
    return f"not authorised by {' and '.join(who)}: our key is not on their allowlist (emma logs says more)"


def eta(size: int, books_total: int, books_have: int, rate: float) -> float:
    """Seconds until complete at ``rate`` bytes/s; 0 when unknown (no rate) or nothing is left."""
    if rate < 1 or books_total <= 0 or books_have >= books_total:
        return 0.0
    left = size * (books_total - books_have) / books_total
    return left / rate


def ratio(uploaded: int, size: int) -> float:
    """The share ratio: bytes served to others per byte of the library (a seed's counts from the whole)."""
    return uploaded / size if size > 0 else 0.0


def current_rates(status: Status, down: float, up: float) -> tuple[float, float]:
    """What a row shows: no download rate unless downloading, no upload rate unless served."""
    if status is not Status.DOWNLOADING:
        down = 0.0
    if status in (Status.STOPPED, Status.ERROR):
        up = 0.0
    return max(0.0, down), max(0.0, up)


@dataclass
class RateMeter:
    """Bytes/s per library over the last RATE_WINDOW seconds of counter samples (one per listing)."""

    window: float = RATE_WINDOW
    samples: dict[str, deque[tuple[float, int, int]]] = field(default_factory=dict)

    def sample(self, records: list[LibraryRecord], now: float) -> None:
        known = set()
        for record in records:
            known.add(record.id)
            kept = self.samples.setdefault(record.id, deque())
            kept.append((now, record.downloaded, record.uploaded))
            while len(kept) > 2 and now - kept[1][0] >= self.window:
                kept.popleft()
        for gone in set(self.samples) - known:
            del self.samples[gone]

    def of(self, library_id: str) -> tuple[float, float]:
        """(download, upload) bytes/s; zero until the samples span RATE_MIN_SPAN."""
        kept = self.samples.get(library_id)
        if not kept or kept[-1][0] - kept[0][0] < RATE_MIN_SPAN:
            return 0.0, 0.0
        (t0, down0, up0), (t1, down1, up1) = kept[0], kept[-1]
        span = t1 - t0
        return (down1 - down0) / span, (up1 - up0) / span
