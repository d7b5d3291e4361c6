"""The hub's peer store: one narrow interface, backends chosen by name.

The broker and the logic only ever see :class:`HubStore`. A backend is a class
with an ``open(path, now)`` class method registered in :data:`STORES`; the
Redis backend is ``store_redis.py`` and one line in that table.

Every method that reads takes ``now`` (seconds since the epoch) and must act
as if entries whose ``expires_at <= now`` were already gone, whether or not
the backend has physically removed them yet.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from services.hub.model import LibraryCounts, PeerRecord, Room, Totals
from services.hub.store_memory import MemoryStore
from services.hub.store_redis import RedisStore
from services.hub.store_sqlite import SqliteStore


class SharedState(Protocol):
    """What hubs sharing one store must agree on besides players (a store used by one hub has none)."""

    def allow(self, endpoint: str, seconds: float) -> None:
        """``endpoint`` announced itself from its own address: any hub may ping it for ``seconds``."""
        ...

    def may_ping(self, endpoint: str) -> bool: ...

    def claim(self, endpoint: str, library_id: bytes, window: float, reachable: int, cooldown: float,
              now: float) -> bool:
        """Add ``library_id`` (may be empty) to the pending ping of ``endpoint``; True when the caller should
        ping it (no ping pending anywhere and no reachable verdict younger than ``cooldown``)."""
        ...

    def verdict(self, endpoint: str) -> tuple[int, float] | None:
        """The latest ping verdict of any hub: (Reachability, when)."""
        ...

    def done(self, endpoint: str, verdict: int, now: float, keep: float) -> list[bytes]:
        """Record a ping's verdict for ``keep`` seconds; return (and forget) the libraries it was reported in."""
        ...

    def count_requests(self, counts: dict[str, int], window: int) -> dict[str, int]:
        """Add requests per address in one-second ``window``; return each address's total over all hubs."""
        ...


class HubStore(Protocol):
    """Players per library, with absolute expiry, and completed counters."""

    name: str

    @property
    def shared(self) -> SharedState | None:
        """What this store lets hubs share besides players; None when one hub is alone with it."""
        ...

    def upsert(self, record: PeerRecord, now: float) -> PeerRecord | None:
        """Insert or replace the entry for (library, player); return the live entry it replaced.

        Owes: the new ``expires_at`` replaces the old one; an expired previous
        entry counts as absent (returns None). A persistent backend may skip
        persisting a refresh (same endpoint and seed status) while the stored
        expiry lags by less than its ``refresh_slack``; reads always see the
        new expiry.
        """
        ...

    def refresh(
        self, record: PeerRecord, count: int, now: float, *, seeds: bool, rng: random.Random
    ) -> tuple[list[bytes], LibraryCounts] | None:
        """The periodic announce in one step: when (library, player) is live with this very ``wire`` (same
        endpoint and seed status), push its expiry to ``record.expires_at`` and return up to ``count`` peer
        wires chosen as :meth:`sample_wires` chooses (never the player itself; leechers only unless
        ``seeds``) with the library's counts (``completed`` may read 0). Otherwise change nothing and
        return None: the caller takes the full path (get, caps, upsert, sample, counts).

        Owes: one round trip for a remote backend. Another hub sharing the store may see the new expiry in
        the counts over all libraries (:meth:`totals`, :meth:`libraries_of`, :meth:`endpoint_entries`) only
        after this store's next :meth:`maintain`.
        """
        ...

    def refresh_many(
        self, asks: Sequence[tuple[PeerRecord, int, bool]], now: float, rng: random.Random
    ) -> list[tuple[list[bytes], LibraryCounts] | None]:
        """:meth:`refresh` for each (record, count, seeds), in order; one round trip for a remote backend."""
        ...

    def refresh_start(
        self, asks: Sequence[tuple[PeerRecord, int, bool]], now: float, rng: random.Random
    ) -> Callable[[], list[tuple[list[bytes], LibraryCounts] | None]]:
        """:meth:`refresh_many` in two steps: start it, and call what this returns for its results (calls come
        in the order of the starts). A remote backend sends now and reads when called, so that its caller
        can work while the server does."""
        ...

    def remove(self, library_id: bytes, player_id: bytes, now: float) -> PeerRecord | None:
        """Forget one player in one library at once; return the live entry removed, if any."""
        ...

    def remove_endpoint(self, library_id: bytes, endpoint: str, now: float) -> list[bytes]:
        """Forget every player of that library announcing ``endpoint``; return their ids."""
        ...

    def find_endpoint(self, library_id: bytes, endpoint: str, now: float) -> list[bytes]:
        """Ids of the live players of that library announcing ``endpoint``."""
        ...

    def get(self, library_id: bytes, player_id: bytes, now: float) -> PeerRecord | None:
        """The live entry for (library, player), or None."""
        ...

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
        """Up to ``count`` live entries of a library, chosen uniformly at random with ``rng``.

        Owes: never returns ``exclude``; with ``seeds=False`` returns leechers
        only; no duplicates; an unknown library gives an empty list.
        """
        ...

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
        """The ``wire`` fields of a sample chosen as :meth:`sample` chooses: the announce hot path.

        Owes: the same guarantees as :meth:`sample`; may skip building records.
        """
        ...

    def counts(self, library_id: bytes, now: float) -> LibraryCounts:
        """Live seeders and leechers of a library and its completed counter (zeros if unknown)."""
        ...

    def add_completed(self, library_id: bytes) -> None:
        """Count one more completed download; the counter outlives the players."""
        ...

    def libraries_of(self, player_id: bytes, now: float) -> int:
        """How many libraries this player is live in (for the per-player cap)."""
        ...

    def swarms(self, now: float) -> list[tuple[bytes, int, int]]:
        """(library id, seeders, leechers) of every library with a live player (for metrics)."""
        ...

    def endpoint_entries(self, endpoint: str, now: float) -> int:
        """How many live (library, player) entries announce ``endpoint`` (for the per-endpoint cap)."""
        ...

    def room(self, library_id: bytes, player_id: bytes, endpoint: str, now: float) -> Room:
        """The figures the caps on a new (library, player, endpoint) entry compare, read together (one round
        trip for a remote backend): :meth:`endpoint_entries`, :meth:`libraries_of`, the library's live
        players and ``totals().entries``."""
        ...

    def totals(self, now: float) -> Totals:
        """Distinct live players, libraries having at least one live player, and live entries."""
        ...

    def maintain(self, now: float) -> None:
        """Housekeeping the broker calls every tick (about 50 ms).

        Owes: drop expired entries; make every change made before this call
        durable (a persistent backend may buffer writes until here, so a crash
        loses at most one tick of announces).
        """
        ...

    def close(self) -> None:
        """Make every change durable and release resources; the store is unusable after."""
        ...


class StoreOpener(Protocol):
    """How a backend is opened: its file (if it has one), the time, the refresh slack in seconds, and its
    server's URL (if it has one)."""

    def __call__(self, path: Path | None, now: float, *, refresh_slack: float = 0.0, url: str = "") -> HubStore: ...



# name -> opener. SQLite is the default; memory is for tests and throwaway hubs; Redis for several hubs.
STORES: dict[str, StoreOpener] = {
    "sqlite": SqliteStore.open,
    "memory": MemoryStore.open,
    "redis": RedisStore.open,
}
DEFAULT_STORE = "sqlite"


class UnknownStore(ValueError):
    """A store name not in :data:`STORES`."""


def open_store(name: str, path: Path | None, now: float, *, refresh_slack: float = 0.0, url: str = "") -> HubStore:
    """Open the backend called ``name`` (``path`` is its database file, ``url`` its server, when it has one)."""
    opener = STORES.get(name)
    if opener is None:
        raise UnknownStore(f"unknown store {name!r}; choose one of: {', '.join(STORES)}")
    return opener(path, now, refresh_slack=refresh_slack, url=url)
