"""One contract suite for every hub store backend, with a fake clock (plain ``now`` values)."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.hub.encode import peer_field
from services.hub.model import LibraryCounts, PeerRecord, Room, Totals
from services.hub.store import STORES, HubStore, UnknownStore, open_store
from services.hub.store_errors import StoreError, StoreUnavailable
from services.hub.store_sqlite import SCHEMA_VERSION as SQLITE_SCHEMA
from tools.redis_server import RedisServer, free_port

T0 = 1_700_000_000.0
LIB_A = b"A" * 32
LIB_B = b"B" * 32


def pid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def rec(n: int, *, lib: bytes = LIB_A, seed: bool = False, expires: float = T0 + 120, port: int = 0) -> PeerRecord:
    endpoint = f"tcp://10.0.0.{n % 250 + 1}:{port or 6000 + n}"
    return PeerRecord(lib, pid(n), endpoint, seed, expires, peer_field(pid(n), endpoint, seed))


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubStore]:
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else ""
    opened = open_store(request.param, tmp_path / "hub.db", T0, url=url)
    yield opened
    opened.close()


def test_upsert_then_get_returns_the_entry(store: HubStore) -> None:
    assert store.upsert(rec(1), T0) is None
    assert store.get(LIB_A, pid(1), T0) == rec(1)
    assert store.get(LIB_B, pid(1), T0) is None


def test_upsert_replaces_and_returns_the_live_entry_it_replaced(store: HubStore) -> None:
    store.upsert(rec(1), T0)
    newer = rec(1, seed=True, expires=T0 + 300, port=7000)
    assert store.upsert(newer, T0 + 1) == rec(1)
    assert store.get(LIB_A, pid(1), T0 + 1) == newer
    assert store.counts(LIB_A, T0 + 1) == LibraryCounts(seeders=1, leechers=0)


def test_an_expired_previous_entry_counts_as_absent(store: HubStore) -> None:
    store.upsert(rec(1, expires=T0 + 10), T0)
    assert store.upsert(rec(1, expires=T0 + 100), T0 + 10) is None


def test_remove_forgets_at_once(store: HubStore) -> None:
    store.upsert(rec(1), T0)
    assert store.remove(LIB_A, pid(1), T0) == rec(1)
    assert store.remove(LIB_A, pid(1), T0) is None
    assert store.get(LIB_A, pid(1), T0) is None
    assert store.totals(T0) == Totals(players=0, libraries=0)


def test_entries_expire_at_their_absolute_time(store: HubStore) -> None:
    store.upsert(rec(1, expires=T0 + 10), T0)
    store.upsert(rec(2, expires=T0 + 20, seed=True), T0)
    assert store.counts(LIB_A, T0 + 9.9) == LibraryCounts(seeders=1, leechers=1)
    assert store.get(LIB_A, pid(1), T0 + 10) is None
    assert store.counts(LIB_A, T0 + 10) == LibraryCounts(seeders=1, leechers=0)
    assert store.libraries_of(pid(1), T0 + 10) == 0
    assert [r.player_id for r in store.sample(LIB_A, 10, T0 + 10, rng=random.Random(1))] == [pid(2)]
    assert store.totals(T0 + 20) == Totals(players=0, libraries=0)


def test_a_reannounce_pushes_expiry_back(store: HubStore) -> None:
    store.upsert(rec(1, expires=T0 + 10), T0)
    store.upsert(rec(1, expires=T0 + 30), T0 + 5)
    store.maintain(T0 + 15)
    assert store.get(LIB_A, pid(1), T0 + 15) is not None
    assert store.get(LIB_A, pid(1), T0 + 30) is None


def test_an_earlier_expiry_and_remove_readd_cycles_expire_on_time(store: HubStore) -> None:
    store.upsert(rec(1, expires=T0 + 100), T0)
    store.upsert(rec(1, expires=T0 + 50), T0)  # a shorter interval after a config change
    for _ in range(5):
        store.remove(LIB_A, pid(2), T0)
        store.upsert(rec(2, expires=T0 + 70), T0)
    assert store.get(LIB_A, pid(1), T0 + 49) is not None
    assert store.get(LIB_A, pid(1), T0 + 50) is None
    assert store.get(LIB_A, pid(2), T0 + 69) is not None
    assert store.totals(T0 + 70) == Totals(players=0, libraries=0)


def test_maintain_drops_expired_entries(store: HubStore) -> None:
    store.upsert(rec(1, expires=T0 + 10), T0)
    store.maintain(T0 + 11)
    assert store.totals(T0 + 11) == Totals(players=0, libraries=0)


def test_sample_is_bounded_unique_and_never_returns_the_excluded_player(store: HubStore) -> None:
    for n in range(30):
        store.upsert(rec(n, seed=n % 3 == 0), T0)
    rng = random.Random(7)
    for count in (0, 1, 5, 29, 30, 100):
        picked = store.sample(LIB_A, count, T0, exclude=pid(4), rng=rng)
        ids = [r.player_id for r in picked]
        assert len(ids) == len(set(ids)) == min(count, 29)
        assert pid(4) not in ids


def test_sample_covers_the_library_uniformly_enough(store: HubStore) -> None:
    for n in range(20):
        store.upsert(rec(n), T0)
    rng = random.Random(3)
    seen = {r.player_id for _ in range(40) for r in store.sample(LIB_A, 3, T0, rng=rng)}
    assert len(seen) == 20


def test_sample_wires_are_the_wires_of_the_same_choice(store: HubStore) -> None:
    for n in range(12):
        store.upsert(rec(n, seed=n % 4 == 0), T0)
    for seeds in (True, False):
        records = store.sample(LIB_A, 5, T0, exclude=pid(3), seeds=seeds, rng=random.Random(9))
        wires = store.sample_wires(LIB_A, 5, T0, exclude=pid(3), seeds=seeds, rng=random.Random(9))
        assert wires == [r.wire for r in records]
    store.upsert(rec(5, port=9999), T0)  # a changed endpoint changes the wire served
    everyone = store.sample_wires(LIB_A, 20, T0, rng=random.Random(1))
    assert rec(5, port=9999).wire in everyone and rec(5).wire not in everyone


def test_sample_without_seeds_returns_leechers_only(store: HubStore) -> None:
    for n in range(10):
        store.upsert(rec(n, seed=n < 5), T0)
    picked = store.sample(LIB_A, 10, T0, seeds=False, rng=random.Random(1))
    assert sorted(r.player_id for r in picked) == [pid(n) for n in range(5, 10)]


def test_sample_of_an_unknown_library_is_empty(store: HubStore) -> None:
    assert store.sample(LIB_B, 10, T0, rng=random.Random(1)) == []


def test_completed_counter_outlives_the_players(store: HubStore) -> None:
    store.upsert(rec(1, seed=True), T0)
    store.add_completed(LIB_A)
    store.add_completed(LIB_A)
    store.remove(LIB_A, pid(1), T0)
    assert store.counts(LIB_A, T0) == LibraryCounts(seeders=0, leechers=0, completed=2)
    assert store.counts(LIB_B, T0) == LibraryCounts()


def test_totals_count_distinct_players_and_live_libraries(store: HubStore) -> None:
    store.upsert(rec(1), T0)
    store.upsert(rec(1, lib=LIB_B), T0)
    store.upsert(rec(2, lib=LIB_B), T0)
    assert store.totals(T0) == Totals(players=2, libraries=2, entries=3)
    assert store.libraries_of(pid(1), T0) == 2
    assert store.libraries_of(pid(3), T0) == 0


def test_entries_per_endpoint_follow_moves_removals_and_expiry(store: HubStore) -> None:
    shared = rec(1, port=9000).endpoint
    store.upsert(rec(1, port=9000), T0)
    store.upsert(rec(1, lib=LIB_B, port=9000, expires=T0 + 10), T0)
    assert store.endpoint_entries(shared, T0) == 2
    moved = rec(1, port=9001)
    store.upsert(moved, T0)
    assert store.endpoint_entries(shared, T0) == 1 and store.endpoint_entries(moved.endpoint, T0) == 1
    assert store.endpoint_entries(shared, T0 + 10) == 0  # the LIB_B entry expired
    store.remove(LIB_A, pid(1), T0 + 11)
    assert store.endpoint_entries(moved.endpoint, T0 + 11) == 0
    assert store.totals(T0 + 11).entries == 0


def test_endpoints_are_found_and_removed_per_library(store: HubStore) -> None:
    store.upsert(rec(1, port=9000), T0)
    store.upsert(rec(1, lib=LIB_B, port=9000), T0)
    store.upsert(rec(2), T0)
    endpoint = rec(1, port=9000).endpoint
    assert store.find_endpoint(LIB_A, endpoint, T0) == [pid(1)]
    assert store.remove_endpoint(LIB_A, endpoint, T0) == [pid(1)]
    assert store.find_endpoint(LIB_A, endpoint, T0) == []
    assert store.find_endpoint(LIB_B, endpoint, T0) == [pid(1)]
    assert store.counts(LIB_A, T0).leechers == 1


def test_many_players_churn_keeps_counts_and_samples_consistent(store: HubStore) -> None:
    rng = random.Random(11)
    live: dict[int, PeerRecord] = {}
    for step in range(2000):
        n = rng.randrange(200)
        if rng.random() < 0.3:
            store.remove(LIB_A, pid(n), T0)
            live.pop(n, None)
        else:
            live[n] = rec(n, seed=rng.random() < 0.5, expires=T0 + 1000 + step, port=rng.choice([0, 9000]))
            store.upsert(live[n], T0)
    seeds = sum(r.seed for r in live.values())
    assert store.counts(LIB_A, T0) == LibraryCounts(seeders=seeds, leechers=len(live) - seeds)
    assert sorted(store.sample_wires(LIB_A, 500, T0, rng=rng)) == sorted(r.wire for r in live.values())
    leechers = sorted(r.wire for r in live.values() if not r.seed)
    assert sorted(store.sample_wires(LIB_A, 500, T0, seeds=False, rng=rng)) == leechers
    assert sorted(r.wire for r in store.sample(LIB_A, 500, T0, seeds=False, rng=rng)) == leechers


def test_refresh_pushes_expiry_of_the_same_entry_and_answers_like_sample_and_counts(store: HubStore) -> None:
    for n in range(8):
        store.upsert(rec(n, seed=n < 3, expires=T0 + 10), T0)
    fresh = rec(5, expires=T0 + 100)
    got = store.refresh(fresh, 4, T0 + 1, seeds=True, rng=random.Random(5))
    assert got is not None
    wires, counts = got
    assert wires == store.sample_wires(LIB_A, 4, T0 + 1, exclude=pid(5), rng=random.Random(5))
    assert fresh.wire not in wires and len(wires) == 4
    assert (counts.seeders, counts.leechers) == (3, 5)
    assert store.get(LIB_A, pid(5), T0 + 50) == fresh  # the others expired at T0 + 10
    leechers = store.refresh(rec(5, expires=T0 + 200), 10, T0 + 50, seeds=False, rng=random.Random(1))
    assert leechers == ([], LibraryCounts(0, 1))
    assert store.totals(T0 + 50) == Totals(players=1, libraries=1, entries=1)
    assert store.libraries_of(pid(5), T0 + 150) == 1
    assert store.endpoint_entries(fresh.endpoint, T0 + 150) == 1


def test_refresh_of_an_absent_or_changed_entry_changes_nothing(store: HubStore) -> None:
    assert store.refresh(rec(1), 5, T0, seeds=True, rng=random.Random(1)) is None
    assert store.get(LIB_A, pid(1), T0) is None
    store.upsert(rec(1, expires=T0 + 10), T0)
    for changed in (rec(1, seed=True, expires=T0 + 99), rec(1, port=9999, expires=T0 + 99)):
        assert store.refresh(changed, 5, T0, seeds=True, rng=random.Random(1)) is None
    assert store.get(LIB_A, pid(1), T0) == rec(1, expires=T0 + 10)
    assert store.refresh(rec(1, expires=T0 + 99), 5, T0 + 10, seeds=True, rng=random.Random(1)) is None


def test_refreshes_started_together_finish_in_order_around_other_calls(store: HubStore) -> None:
    for n in range(6):
        store.upsert(rec(n, seed=n == 0), T0)
    first = store.refresh_start([(rec(1, expires=T0 + 500), 10, False), (rec(9), 10, True)], T0, random.Random(1))
    second = store.refresh_start([(rec(2, expires=T0 + 500), 10, True)], T0, random.Random(2))
    between = store.refresh(rec(3, expires=T0 + 500), 10, T0, seeds=True, rng=random.Random(3))
    assert between is not None and len(between[0]) == 5
    one, absent = first()
    assert absent is None and one is not None and sorted(one[0]) == sorted(rec(n).wire for n in (2, 3, 4, 5))
    (two,) = second()
    assert two is not None and len(two[0]) == 5 and two[1] == LibraryCounts(1, 5)
    assert store.get(LIB_A, pid(2), T0 + 400) is not None and store.get(LIB_A, pid(4), T0 + 400) is None


def test_refreshes_in_a_library_that_grows_and_shrinks_return_every_other_player_they_can(store: HubStore) -> None:
    """Whatever a store remembers between refreshes (the Redis store keeps each library's last size to read its
    windows), a refresh answers min(count, others) distinct live peers, never the asker, with exact counts."""
    rng = random.Random(7)
    live: dict[int, PeerRecord] = {}
    for n in range(30):
        live[n] = rec(n, seed=n % 4 == 0)
        store.upsert(live[n], T0)
    for step in range(120):
        if step % 3 == 0 and len(live) > 2:  # leave in bursts: a window read at the old size comes back short
            for gone in rng.sample(sorted(live), rng.randint(1, len(live) // 2)):
                store.remove(LIB_A, pid(gone), T0)
                del live[gone]
        elif step % 3 == 1:
            for n in rng.sample(range(30, 200), rng.randint(1, 20)):
                live[n] = rec(n, seed=n % 4 == 0)
                store.upsert(live[n], T0)
        asker = live[rng.choice(sorted(live))]
        count, seeds = rng.randint(0, 40), not asker.seed  # 0 too: a numwant of none
        got = store.refresh(asker, count, T0, seeds=seeds, rng=rng)
        assert got is not None
        wires, counts = got
        offered = {r.wire for r in live.values() if (seeds or not r.seed) and r.wire != asker.wire}
        assert len(wires) == len(set(wires)) == min(count, len(offered)), step
        assert set(wires) <= offered, step
        seeders = sum(r.seed for r in live.values())
        assert counts == LibraryCounts(seeders, len(live) - seeders), step


def test_room_reads_what_the_caps_compare_in_one_call(store: HubStore) -> None:
    shared = rec(1, port=9000).endpoint
    store.upsert(rec(1, port=9000), T0)
    store.upsert(rec(1, lib=LIB_B, port=9000, expires=T0 + 10), T0)
    store.upsert(rec(2, seed=True), T0)
    assert store.room(LIB_A, pid(1), shared, T0) == Room(endpoint_entries=2, player_libraries=2, library_players=2,
                                                         entries=3)
    assert store.room(LIB_B, pid(3), "tcp://10.9.9.9:1", T0 + 10) == Room(0, 0, 0, 2)


def test_unknown_store_name_is_refused() -> None:
    with pytest.raises(UnknownStore, match="choose one of"):
        open_store("redis-someday", None, T0)


def test_sqlite_entries_and_counters_survive_a_reopen(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    first = open_store("sqlite", db, T0)
    first.upsert(rec(1, expires=T0 + 100), T0)
    first.upsert(rec(2, expires=T0 + 50, seed=True), T0)
    first.upsert(rec(3, expires=T0 + 100), T0)
    first.remove(LIB_A, pid(3), T0)
    first.add_completed(LIB_A)
    first.maintain(T0 + 1)
    first.close()
    second = open_store("sqlite", db, T0 + 10)
    try:
        assert second.get(LIB_A, pid(1), T0 + 10) == rec(1, expires=T0 + 100)
        assert second.get(LIB_A, pid(3), T0 + 10) is None
        assert second.counts(LIB_A, T0 + 10) == LibraryCounts(seeders=1, leechers=1, completed=1)
        assert second.counts(LIB_A, T0 + 50) == LibraryCounts(seeders=0, leechers=1, completed=1)
        assert second.totals(T0 + 100) == Totals(players=0, libraries=0)
    finally:
        second.close()


def test_sqlite_keeps_each_players_key_across_a_reopen_and_takes_a_schema_1_file(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    endpoint = "tcp://10.0.0.9:7000"
    keyed = PeerRecord(LIB_A, pid(9), endpoint, True, T0 + 100, peer_field(pid(9), endpoint, True, "K" * 40))
    first = open_store("sqlite", db, T0)
    first.upsert(keyed, T0)
    first.maintain(T0)
    first.close()
    second = open_store("sqlite", db, T0 + 1)
    try:
        assert second.get(LIB_A, pid(9), T0 + 1) == keyed
    finally:
        second.close()
    old = tmp_path / "old.db"  # a file written before keys: schema 1, no wire column
    conn = sqlite3.connect(old)
    conn.executescript("CREATE TABLE peers (library_id BLOB NOT NULL, player_id BLOB NOT NULL, endpoint TEXT NOT "
                       "NULL, seed INTEGER NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (library_id, player_id)) "
                       "WITHOUT ROWID; CREATE TABLE completed (library_id BLOB PRIMARY KEY, count INTEGER NOT NULL) "
                       "WITHOUT ROWID; PRAGMA user_version = 1;")
    conn.execute("INSERT INTO peers VALUES (?, ?, ?, ?, ?)", (LIB_A, pid(1), rec(1).endpoint, 0, T0 + 100))
    conn.commit()
    conn.close()
    migrated = open_store("sqlite", old, T0)
    try:
        assert migrated.get(LIB_A, pid(1), T0) == rec(1, expires=T0 + 100)
    finally:
        migrated.close()


def test_sqlite_refuses_a_newer_hub_db_naming_both_versions_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)  # hub.db as a later hub may leave it: a schema this hub does not know
    conn.executescript(f"CREATE TABLE peers (library_id BLOB); PRAGMA user_version = {SQLITE_SCHEMA + 1};")
    conn.close()
    before = newer.read_bytes()
    with pytest.raises(StoreError) as info:
        open_store("sqlite", newer, T0)
    message = str(info.value)
    assert f"version {SQLITE_SCHEMA + 1}" in message and f"this hub's {SQLITE_SCHEMA}" in message
    assert "upgrade this hub" in message
    assert newer.read_bytes() == before


def test_sqlite_reopen_after_expiry_loads_nothing_stale(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    first = open_store("sqlite", db, T0)
    first.upsert(rec(1, expires=T0 + 10), T0)
    first.close()
    second = open_store("sqlite", db, T0 + 11)
    try:
        assert second.totals(T0 + 11) == Totals(players=0, libraries=0)
    finally:
        second.close()


def test_sqlite_writes_a_refresh_only_past_the_slack(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    first = open_store("sqlite", db, T0, refresh_slack=30)
    first.upsert(rec(1, expires=T0 + 120), T0)
    first.maintain(T0)
    first.upsert(rec(1, expires=T0 + 140), T0 + 20)  # 20 s later than stored: not written
    assert first.get(LIB_A, pid(1), T0 + 20) == rec(1, expires=T0 + 140)
    first.close()
    second = open_store("sqlite", db, T0 + 20, refresh_slack=30)
    assert second.get(LIB_A, pid(1), T0 + 20) == rec(1, expires=T0 + 120)
    second.upsert(rec(1, expires=T0 + 160), T0 + 40)  # 40 s later: written
    second.close()
    third = open_store("sqlite", db, T0 + 40, refresh_slack=30)
    try:
        assert third.get(LIB_A, pid(1), T0 + 40) == rec(1, expires=T0 + 160)
    finally:
        third.close()


def test_sqlite_refuses_a_second_hub_on_the_same_file(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    first = open_store("sqlite", db, T0)
    try:
        first.upsert(rec(1), T0)
        first.maintain(T0)
        with pytest.raises(StoreError, match="another hub"):
            open_store("sqlite", db, T0)
    finally:
        first.close()


def test_sqlite_needs_a_path() -> None:
    with pytest.raises(StoreError, match="--db"):
        open_store("sqlite", None, T0)


def test_redis_hubs_sharing_one_server_see_each_others_players(redis_server: RedisServer) -> None:
    first = open_store("redis", None, T0, url=redis_server.url)
    second = open_store("redis", None, T0, url=redis_server.url)
    try:
        first.upsert(rec(1), T0)
        second.upsert(rec(2, seed=True), T0)
        second.add_completed(LIB_A)
        assert first.counts(LIB_A, T0) == second.counts(LIB_A, T0) == LibraryCounts(1, 1, 1)
        both = sorted([rec(1).wire, rec(2, seed=True).wire])
        assert sorted(second.sample_wires(LIB_A, 5, T0, rng=random.Random(1))) == both
        assert first.remove(LIB_A, pid(2), T0) == rec(2, seed=True)
        assert second.totals(T0) == Totals(players=1, libraries=1, entries=1)
    finally:
        first.close()
        second.close()


def test_redis_down_raises_store_unavailable_and_a_restarted_server_is_used_again(redis_server: RedisServer) -> None:
    store = open_store("redis", None, T0, url=redis_server.url)
    try:
        store.upsert(rec(1), T0)
        redis_server.stop()
        with pytest.raises(StoreUnavailable, match="next hub"):
            store.refresh(rec(1), 5, T0, seeds=True, rng=random.Random(1))
        with pytest.raises(StoreUnavailable):
            store.counts(LIB_A, T0)
        redis_server.start()  # empty: it kept nothing, so the periodic announce takes the full path
        assert store.refresh(rec(1), 5, T0, seeds=True, rng=random.Random(1)) is None
        store.upsert(rec(1), T0)
        again = store.refresh(rec(1, expires=T0 + 200), 5, T0, seeds=True, rng=random.Random(1))
        assert again == ([], LibraryCounts(0, 1))
    finally:
        store.close()


def test_redis_store_refuses_a_missing_or_unreachable_server(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="--redis"):
        open_store("redis", None, T0)
    with pytest.raises(StoreError, match="cannot reach Redis"):
        open_store("redis", None, T0, url=f"redis://127.0.0.1:{free_port()}/0")
