"""One library being downloaded, as the Requestor's logic tracks it. Pure state, no I/O.

Books are verified, written into the partial file (by the loop, see
``partfile.py`` and ``writer.py``) and then recorded here at once, so they can
be served. Durability runs in batches: ``begin_sync`` hands the books written
so far to an fdatasync (done off the loop), and ``end_sync`` adds them to
``durable``, the bitfield the loop then persists to state.db. A crash
therefore loses at most the books since the last finished sync and never
marks an unwritten book as held.

It also holds what the Requestor learned about the library's sources: strikes
and bans for peers that sent bad books, when to ask the hub again, and
whether the download is stalled for want of a source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.peer.bitfield import Bitfield
from services.peer.library import Library
from services.peer.pace import Pace
from services.peer.picker import Picker

BAN_THRESHOLD = 3


@dataclass
class Download:
    library: Library
    picker: Picker
    downloaded: int = 0
    fetched: int = 0
    durable: Bitfield = field(init=False)
    unsynced: list[int] = field(default_factory=list)
    syncing: list[int] | None = None
    verifying: set[int] = field(default_factory=set)
    strikes: dict[str, int] = field(default_factory=dict)
    banned: set[str] = field(default_factory=set)
    bad_books: int = 0
    # asking the hub for peers
    next_ask: float = 0.0
    asks: int = 0
    starved: int = 0  # hub answers in a row that failed or named nobody
    answered: bool = False  # the hub answered at least once
    hub_ok: bool = False  # ... with peers or none, not a failure
    hub_named: bool = False  # its last answer named another player
    hub_down_since: float | None = None  # no hub answered since (now of the first failed ask in a row)
    # stalled: missing books that no known source holds
    stalled: int = 0
    stalled_since: float | None = None
    pace: Pace = field(default_factory=Pace)  # how fast this player gains books

    def __post_init__(self) -> None:
        self.durable = Bitfield(self.library.books, self.picker.have.to_bytes())

    @property
    def id(self) -> bytes:
        return self.library.id

    @property
    def complete(self) -> bool:
        return self.picker.complete

    def record_written(self, book: int, length: int) -> None:
        """A verified book is on disk (not yet synced): count it and queue it for the next sync."""
        self.downloaded += length
        self.fetched += 1
        self.unsynced.append(book)

    def strike(self, peer: str) -> bool:
        """Count a bad book against ``peer``; True when it is now banned."""
        self.bad_books += 1
        self.strikes[peer] = self.strikes.get(peer, 0) + 1
        if self.strikes[peer] >= BAN_THRESHOLD:
            self.banned.add(peer)
            return True
        return False

    def begin_sync(self) -> bool:
        """Start a batch: True if there are written books to make durable and no batch runs."""
        if self.syncing is not None or not self.unsynced:
            return False
        self.syncing, self.unsynced = self.unsynced, []
        return True

    def end_sync(self) -> None:
        """The batch's fdatasync returned: its books are durable."""
        for book in self.syncing or ():
            self.durable.add(book)
        self.syncing = None

    def abort_sync(self) -> None:
        """The batch's fdatasync failed: its books wait for the next batch."""
        self.unsynced = [*(self.syncing or ()), *self.unsynced]
        self.syncing = None

    @property
    def finishable(self) -> bool:
        return self.complete and self.syncing is None and not self.unsynced
