"""The in-memory peer index behind both the memory and the SQLite stores.

How this works:

- Per library, a dict ``player_id -> PeerRecord`` plus two lists of player ids
  (seeds, leechers) and a position map, so a removal is O(1) (swap the last
  id into the hole) and a random sample is ``rng.sample`` over list indices.
- A min-heap of ``(expires_at, library_id, player_id)`` finds expired entries
  without scanning. Every operation first pops the heap while its head is due
  and removes the entry only if its current ``expires_at`` still matches: a
  re-announce leaves a stale heap item that is discarded when it surfaces.
  The heap is rebuilt when stale items outnumber live entries four to one.
- ``player_id -> number of libraries`` answers the per-player cap and the
  distinct-player total in O(1).

Nothing here reads a clock: callers pass ``now``.
"""

from __future__ import annotations

import heapq
import random

from services.hub.model import LibraryCounts, PeerRecord, Totals

_COMPACT_FACTOR = 4
_COMPACT_FLOOR = 1024


class _Library:
    """The live players of one library."""

    __slots__ = ("leechers", "pos", "records", "seeds")

    def __init__(self) -> None:
        self.records: dict[bytes, PeerRecord] = {}
        self.seeds: list[bytes] = []
        self.leechers: list[bytes] = []
        self.pos: dict[bytes, int] = {}

    def add(self, record: PeerRecord) -> None:
        ids = self.seeds if record.seed else self.leechers
        self.records[record.player_id] = record
        self.pos[record.player_id] = len(ids)
        ids.append(record.player_id)

    def discard(self, player_id: bytes) -> PeerRecord | None:
        record = self.records.pop(player_id, None)
        if record is None:
            return None
        ids = self.seeds if record.seed else self.leechers
        hole = self.pos.pop(player_id)
        last = ids.pop()
        if hole < len(ids):
            ids[hole] = last
            self.pos[last] = hole
        return record


class PeerIndex:
    """Live players per library with absolute expiry; see the module comment."""

    def __init__(self) -> None:
        self._libs: dict[bytes, _Library] = {}
        self._player_libs: dict[bytes, int] = {}
        self._heap: list[tuple[float, bytes, bytes]] = []
        self._size = 0
        self._completed: dict[bytes, int] = {}

    def expire(self, now: float) -> int:
        """Drop every entry with ``expires_at <= now``; return how many were dropped."""
        heap = self._heap
        dropped = 0
        while heap and heap[0][0] <= now:
            expires_at, library_id, player_id = heapq.heappop(heap)
            library = self._libs.get(library_id)
            record = library.records.get(player_id) if library is not None else None
            if record is not None and record.expires_at == expires_at:
                self._drop(library_id, player_id)
                dropped += 1
        return dropped

    def put(self, record: PeerRecord, now: float) -> PeerRecord | None:
        """Insert or replace; return the live entry replaced."""
        self.expire(now)
        library = self._libs.get(record.library_id)
        if library is None:
            library = self._libs[record.library_id] = _Library()
        old = library.discard(record.player_id)
        if old is None:
            self._size += 1
            self._player_libs[record.player_id] = self._player_libs.get(record.player_id, 0) + 1
        library.add(record)
        heapq.heappush(self._heap, (record.expires_at, record.library_id, record.player_id))
        if len(self._heap) > _COMPACT_FACTOR * self._size + _COMPACT_FLOOR:
            self._compact()
        return old

    def pop(self, library_id: bytes, player_id: bytes, now: float) -> PeerRecord | None:
        """Remove one entry; return it if it was live."""
        self.expire(now)
        return self._drop(library_id, player_id)

    def get(self, library_id: bytes, player_id: bytes, now: float) -> PeerRecord | None:
        self.expire(now)
        library = self._libs.get(library_id)
        return library.records.get(player_id) if library is not None else None

    def find_endpoint(self, library_id: bytes, endpoint: str, now: float) -> list[bytes]:
        self.expire(now)
        library = self._libs.get(library_id)
        if library is None:
            return []
        return [pid for pid, record in library.records.items() if record.endpoint == endpoint]

    def sample(
        self, library_id: bytes, count: int, now: float, exclude: bytes, seeds: bool, rng: random.Random
    ) -> list[PeerRecord]:
        """Up to ``count`` random live entries, never ``exclude``, leechers only unless ``seeds``."""
        self.expire(now)
        library = self._libs.get(library_id)
        if library is None or count <= 0:
            return []
        leechers, seed_ids = library.leechers, library.seeds
        pool = len(leechers) + (len(seed_ids) if seeds else 0)
        picks = rng.sample(range(pool), min(count + 1, pool))
        records = library.records
        out: list[PeerRecord] = []
        split = len(leechers)
        for pick in picks:
            player_id = leechers[pick] if pick < split else seed_ids[pick - split]
            if player_id == exclude:
                continue
            out.append(records[player_id])
            if len(out) == count:
                break
        return out

    def counts(self, library_id: bytes, now: float) -> LibraryCounts:
        self.expire(now)
        library = self._libs.get(library_id)
        completed = self._completed.get(library_id, 0)
        if library is None:
            return LibraryCounts(completed=completed)
        return LibraryCounts(len(library.seeds), len(library.leechers), completed)

    def add_completed(self, library_id: bytes, amount: int = 1) -> int:
        """Add to a library's completed counter; return the new value."""
        value = self._completed.get(library_id, 0) + amount
        self._completed[library_id] = value
        return value

    def libraries_of(self, player_id: bytes, now: float) -> int:
        self.expire(now)
        return self._player_libs.get(player_id, 0)

    def totals(self, now: float) -> Totals:
        self.expire(now)
        return Totals(players=len(self._player_libs), libraries=len(self._libs))

    def _drop(self, library_id: bytes, player_id: bytes) -> PeerRecord | None:
        library = self._libs.get(library_id)
        if library is None:
            return None
        record = library.discard(player_id)
        if record is None:
            return None
        self._size -= 1
        if not library.records:
            del self._libs[library_id]
        left = self._player_libs[player_id] - 1
        if left:
            self._player_libs[player_id] = left
        else:
            del self._player_libs[player_id]
        return record

    def _compact(self) -> None:
        self._heap = [
            (record.expires_at, record.library_id, record.player_id)
            for library in self._libs.values()
            for record in library.records.values()
        ]
        heapq.heapify(self._heap)
