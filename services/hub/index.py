"""The in-memory peer index behind both the memory and the SQLite stores.

How this works:

- Per library, a dict ``player_id -> PeerRecord`` plus two shuffled lists of
  player ids (everyone, leechers), each with a position map and the peers'
  encoded ``wire`` alongside. Insertion at a random position and swap-last
  removal are O(1) and keep each list a uniformly random permutation, so a
  random sample is a window of consecutive entries from a random start, and
  a reply's peer list is a slice of ``wire`` bytes.
- A min-heap of ``(due, library_id, player_id)`` finds expired entries
  without scanning. Each live entry has one scheduled item (its ``due`` time
  kept in ``_Library.scheduled``); a refresh only moves ``expires_at`` later
  and touches no heap item. Every operation first pops the heap while its
  head is due: an item whose entry was removed or rescheduled is stale and
  skipped; an entry refreshed since is rescheduled at its new expiry; the
  rest expire. The heap is rebuilt if stale items ever outnumber live
  entries four to one.
- ``player_id -> number of libraries`` and ``endpoint -> number of entries``
  answer the per-player and per-endpoint caps and the distinct-player total in O(1).

Nothing here reads a clock: callers pass ``now``.
"""

from __future__ import annotations

import heapq
import random

from services.hub.model import LibraryCounts, PeerRecord, Totals

_COMPACT_FACTOR = 4
_COMPACT_FLOOR = 1024


class _Shuffled:
    """Player ids in uniformly random order, each with its ``wire`` in a parallel list.

    A new id goes to a random position (the id it displaces moves to the
    end); a removal moves the last id into the hole. Both keep the order a
    uniformly random permutation, so any window of consecutive positions is
    a uniformly random subset.
    """

    __slots__ = ("ids", "pos", "wires")

    def __init__(self) -> None:
        self.ids: list[bytes] = []
        self.wires: list[bytes] = []
        self.pos: dict[bytes, int] = {}

    def add(self, player_id: bytes, wire: bytes, rng: random.Random) -> None:
        ids, wires, pos = self.ids, self.wires, self.pos
        end = len(ids)
        spot = int(rng.random() * (end + 1))
        if spot == end:
            ids.append(player_id)
            wires.append(wire)
            pos[player_id] = end
            return
        displaced = ids[spot]
        ids.append(displaced)
        wires.append(wires[spot])
        ids[spot], wires[spot] = player_id, wire
        pos[player_id], pos[displaced] = spot, end

    def remove(self, player_id: bytes) -> None:
        ids, wires, pos = self.ids, self.wires, self.pos
        hole = pos.pop(player_id)
        last, last_wire = ids.pop(), wires.pop()
        if hole < len(ids):
            ids[hole], wires[hole] = last, last_wire
            pos[last] = hole

    def set_wire(self, player_id: bytes, wire: bytes) -> None:
        self.wires[self.pos[player_id]] = wire

    def window(self, items: list[bytes], count: int, exclude: bytes, rng: random.Random) -> list[bytes]:
        """Up to ``count`` consecutive entries of ``items`` (ids or wires) from a random start, minus ``exclude``."""
        pool = len(items)
        if pool == 0 or count <= 0:
            return []
        take = min(count + 1, pool)
        start = int(rng.random() * pool)
        end = start + take
        picked = items[start:end] if end <= pool else items[start:] + items[: end - pool]
        skip = self.pos.get(exclude)
        if skip is not None and (skip - start) % pool < take:
            del picked[(skip - start) % pool]
        return picked[:count]


class _Library:
    """The live players of one library: everyone, and the leechers among them."""

    __slots__ = ("everyone", "leechers", "records", "scheduled")

    def __init__(self) -> None:
        self.records: dict[bytes, PeerRecord] = {}
        self.scheduled: dict[bytes, float] = {}  # player -> time of its one live heap item
        self.everyone = _Shuffled()
        self.leechers = _Shuffled()

    def put(self, record: PeerRecord, rng: random.Random) -> PeerRecord | None:
        player_id, wire = record.player_id, record.wire
        old = self.records.get(player_id)
        self.records[player_id] = record
        if old is None:
            self.everyone.add(player_id, wire, rng)
        elif old.wire != wire:
            self.everyone.set_wire(player_id, wire)
        if record.seed:
            if old is not None and not old.seed:
                self.leechers.remove(player_id)
        elif old is None or old.seed:
            self.leechers.add(player_id, wire, rng)
        elif old.wire != wire:
            self.leechers.set_wire(player_id, wire)
        return old

    def discard(self, player_id: bytes) -> PeerRecord | None:
        record = self.records.pop(player_id, None)
        if record is None:
            return None
        del self.scheduled[player_id]
        self.everyone.remove(player_id)
        if not record.seed:
            self.leechers.remove(player_id)
        return record


class PeerIndex:
    """Live players per library with absolute expiry; see the module comment."""

    def __init__(self, track_expired: bool = False, rng: random.Random | None = None) -> None:
        self.track_expired = track_expired
        self._rng = rng or random.Random()
        self.expired: list[PeerRecord] = []  # dropped by expiry, kept for the caller when tracking
        self._libs: dict[bytes, _Library] = {}
        self._player_libs: dict[bytes, int] = {}
        self._endpoint_entries: dict[str, int] = {}
        self._heap: list[tuple[float, bytes, bytes]] = []
        self._size = 0
        self._completed: dict[bytes, int] = {}

    def expire(self, now: float) -> int:
        """Drop every entry with ``expires_at <= now``; return how many were dropped."""
        heap = self._heap
        dropped = 0
        while heap and heap[0][0] <= now:
            due, library_id, player_id = heapq.heappop(heap)
            library = self._libs.get(library_id)
            if library is None or library.scheduled.get(player_id) != due:
                continue  # stale: the entry was removed or rescheduled
            record = library.records[player_id]
            if record.expires_at > now:  # refreshed since it was scheduled: look again later
                library.scheduled[player_id] = record.expires_at
                heapq.heappush(heap, (record.expires_at, library_id, player_id))
                continue
            self._drop(library_id, player_id)
            dropped += 1
            if self.track_expired:
                self.expired.append(record)
        return dropped

    def put(self, record: PeerRecord, now: float) -> PeerRecord | None:
        """Insert or replace; return the live entry replaced.

        A refresh that pushes expiry later touches no heap item: the item
        already scheduled reschedules itself when it comes due.
        """
        self.expire(now)
        library_id, player_id, expires_at = record.library_id, record.player_id, record.expires_at
        library = self._libs.get(library_id)
        if library is None:
            library = self._libs[library_id] = _Library()
        old = library.put(record, self._rng)
        if old is None:
            self._size += 1
            self._player_libs[player_id] = self._player_libs.get(player_id, 0) + 1
        if old is None or old.endpoint != record.endpoint:
            if old is not None:
                self._forget_endpoint(old.endpoint)
            self._endpoint_entries[record.endpoint] = self._endpoint_entries.get(record.endpoint, 0) + 1
        scheduled = library.scheduled.get(player_id)
        if scheduled is None or expires_at < scheduled:
            library.scheduled[player_id] = expires_at
            heapq.heappush(self._heap, (expires_at, library_id, player_id))
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
        """Up to ``count`` random live entries, never ``exclude``, leechers only unless ``seeds``.

        A window of consecutive ids from a random start (see :class:`_Shuffled`):
        each answer is a uniformly random subset; answers given at nearly the
        same time overlap more than independent draws would, until churn
        reshuffles the order.
        """
        library = self._library(library_id, now)
        if library is None:
            return []
        chosen = library.everyone if seeds else library.leechers
        return list(map(library.records.__getitem__, chosen.window(chosen.ids, count, exclude, rng)))

    def sample_wires(
        self, library_id: bytes, count: int, now: float, exclude: bytes, seeds: bool, rng: random.Random
    ) -> list[bytes]:
        """Like :meth:`sample`, but only the chosen entries' ``wire`` fields (no record is touched)."""
        library = self._library(library_id, now)
        if library is None:
            return []
        chosen = library.everyone if seeds else library.leechers
        return chosen.window(chosen.wires, count, exclude, rng)

    def _library(self, library_id: bytes, now: float) -> _Library | None:
        self.expire(now)
        return self._libs.get(library_id)

    def counts(self, library_id: bytes, now: float) -> LibraryCounts:
        self.expire(now)
        library = self._libs.get(library_id)
        completed = self._completed.get(library_id, 0)
        if library is None:
            return LibraryCounts(completed=completed)
        leechers = len(library.leechers.ids)
        return LibraryCounts(len(library.records) - leechers, leechers, completed)

    def add_completed(self, library_id: bytes, amount: int = 1) -> int:
        """Add to a library's completed counter; return the new value."""
        value = self._completed.get(library_id, 0) + amount
        self._completed[library_id] = value
        return value

    def libraries_of(self, player_id: bytes, now: float) -> int:
        self.expire(now)
        return self._player_libs.get(player_id, 0)

    def swarms(self, now: float) -> list[tuple[bytes, int, int]]:
        """(library id, seeders, leechers) of every library with a live player."""
        self.expire(now)
        return [(library_id, len(lib.records) - len(lib.leechers.ids), len(lib.leechers.ids))
                for library_id, lib in self._libs.items()]

    def endpoint_entries(self, endpoint: str, now: float) -> int:
        self.expire(now)
        return self._endpoint_entries.get(endpoint, 0)

    def totals(self, now: float) -> Totals:
        self.expire(now)
        return Totals(players=len(self._player_libs), libraries=len(self._libs), entries=self._size)

    def _forget_endpoint(self, endpoint: str) -> None:
        left = self._endpoint_entries[endpoint] - 1
        if left:
            self._endpoint_entries[endpoint] = left
        else:
            del self._endpoint_entries[endpoint]

    def _drop(self, library_id: bytes, player_id: bytes) -> PeerRecord | None:
        library = self._libs.get(library_id)
        if library is None:
            return None
        record = library.discard(player_id)
        if record is None:
            return None
        self._size -= 1
        self._forget_endpoint(record.endpoint)
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
            (due, library_id, player_id)
            for library_id, library in self._libs.items()
            for player_id, due in library.scheduled.items()
        ]
        heapq.heapify(self._heap)
