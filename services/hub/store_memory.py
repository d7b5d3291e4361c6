"""The in-memory store: a :class:`PeerIndex` and nothing else.

Everything is lost when the hub stops; use it for tests and throwaway hubs.
The SQLite store extends it: same reads, writes also noted for persistence.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

from services.hub.index import PeerIndex
from services.hub.model import LibraryCounts, PeerRecord, Room, Totals


class MemoryStore:
    """A :class:`~services.hub.store.HubStore` held in this process's memory."""

    name = "memory"
    shared = None  # one hub per store: nothing to share

    def __init__(self, *, track_expired: bool = False, rng: random.Random | None = None) -> None:
        """``rng`` places new players in the random order samples are drawn from (seed it for a run that
        must repeat itself, as the simulator's)."""
        self._index = PeerIndex(track_expired=track_expired, rng=rng)

    @classmethod
    def open(cls, path: Path | None, now: float, *, refresh_slack: float = 0.0, url: str = "") -> MemoryStore:
        """Open an empty store; ``path``, ``refresh_slack`` and ``url`` are ignored."""
        return cls()

    def upsert(self, record: PeerRecord, now: float) -> PeerRecord | None:
        return self._index.put(record, now)

    def refresh(
        self, record: PeerRecord, count: int, now: float, *, seeds: bool, rng: random.Random
    ) -> tuple[list[bytes], LibraryCounts] | None:
        old = self._index.get(record.library_id, record.player_id, now)
        if old is None or old.wire != record.wire:
            return None
        self.upsert(record, now)
        peers = self._index.sample_wires(record.library_id, count, now, record.player_id, seeds, rng)
        return peers, self._index.counts(record.library_id, now)

    def refresh_many(
        self, asks: Sequence[tuple[PeerRecord, int, bool]], now: float, rng: random.Random
    ) -> list[tuple[list[bytes], LibraryCounts] | None]:
        return [self.refresh(record, count, now, seeds=seeds, rng=rng) for record, count, seeds in asks]

    def refresh_start(
        self, asks: Sequence[tuple[PeerRecord, int, bool]], now: float, rng: random.Random
    ) -> Callable[[], list[tuple[list[bytes], LibraryCounts] | None]]:
        done = self.refresh_many(asks, now, rng)
        return lambda: done

    def remove(self, library_id: bytes, player_id: bytes, now: float) -> PeerRecord | None:
        return self._index.pop(library_id, player_id, now)

    def remove_endpoint(self, library_id: bytes, endpoint: str, now: float) -> list[bytes]:
        found = self._index.find_endpoint(library_id, endpoint, now)
        for player_id in found:
            self.remove(library_id, player_id, now)
        return found

    def find_endpoint(self, library_id: bytes, endpoint: str, now: float) -> list[bytes]:
        return self._index.find_endpoint(library_id, endpoint, now)

    def get(self, library_id: bytes, player_id: bytes, now: float) -> PeerRecord | None:
        return self._index.get(library_id, player_id, now)

    def sample(
        self,
        library_id: bytes,
        count: int,
        now: float,
        *,
        exclude: bytes = b"",
        seeds: bool = True,
        rng: random.Random,
    ) -> list[PeerRecord]:
        return self._index.sample(library_id, count, now, exclude, seeds, rng)

    def sample_wires(
        self,
        library_id: bytes,
        count: int,
        now: float,
        *,
        exclude: bytes = b"",
        seeds: bool = True,
        rng: random.Random,
    ) -> list[bytes]:
        return self._index.sample_wires(library_id, count, now, exclude, seeds, rng)

    def counts(self, library_id: bytes, now: float) -> LibraryCounts:
        return self._index.counts(library_id, now)

    def add_completed(self, library_id: bytes) -> None:
        self._index.add_completed(library_id)

    def libraries_of(self, player_id: bytes, now: float) -> int:
        return self._index.libraries_of(player_id, now)

    def swarms(self, now: float) -> list[tuple[bytes, int, int]]:
        return self._index.swarms(now)

    def endpoint_entries(self, endpoint: str, now: float) -> int:
        return self._index.endpoint_entries(endpoint, now)

    def room(self, library_id: bytes, player_id: bytes, endpoint: str, now: float) -> Room:
        index = self._index
        seeders, leechers, _ = index.counts(library_id, now)
        return Room(index.endpoint_entries(endpoint, now), index.libraries_of(player_id, now), seeders + leechers,
                    index.totals(now).entries)

    def totals(self, now: float) -> Totals:
        return self._index.totals(now)

    def maintain(self, now: float) -> None:
        self._index.expire(now)

    def close(self) -> None:
        """Nothing to release."""
