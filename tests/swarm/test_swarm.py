"""Real multi-process swarms on 127.0.0.1: files travel, verified, and resume."""

from __future__ import annotations

import socket as socketlib

import pytest

from services.cli.fmt import state_word
from services.hub.client import HubClient
from services.hub.client_types import AnnounceEvent
from services.peer.download import BAN_THRESHOLD
from services.runtime.rundir import distributor_endpoint, run_dir
from services.supervisor.control_client import ControlClient
from tests.polling import wait_for
from tests.swarm.conftest import log_events, persisted_books
from tools.swarm import Swarm, file_digest

pytestmark = pytest.mark.slow
BOOK = 16 * 1024


def assert_identical(swarm: Swarm, players, library, source) -> None:
    want = file_digest(source)
    for player in players:
        path = player.stuff_path(library.id_hex)
        assert path is not None and path.name.startswith(library.name)
        assert file_digest(path) == want, f"{player.name} has a different copy"


def test_one_seed_three_leechers_end_byte_identical(swarm, stuff):
    source = stuff("data.bin", 40 * BOOK + 123)
    seed, *leechers = [swarm.add_player(f"p{i}") for i in range(4)]
    library = swarm.share(seed, source, BOOK)
    for player in [seed, *leechers]:
        swarm.start_player(player)
    for player in leechers:
        swarm.give(player, library)
    swarm.wait_complete(library, leechers, timeout=60)
    assert_identical(swarm, leechers, library, source)


def test_late_joiner_completes(swarm, stuff):
    source = stuff("late.bin", 20 * BOOK)
    seed, first = swarm.add_player("seed"), swarm.add_player("first")
    library = swarm.share(seed, source, BOOK)
    swarm.start_player(seed)
    swarm.start_player(first)
    swarm.give(first, library)
    swarm.wait_complete(library, [first], timeout=60)
    late = swarm.add_player("late")
    swarm.start_player(late)
    swarm.give(late, library)
    swarm.wait_complete(library, [late], timeout=60)
    assert_identical(swarm, [first, late], library, source)


@pytest.mark.parametrize("size", [0, 1, 7 * BOOK + 5])
def test_empty_and_uneven_sizes(swarm, stuff, size):
    source = stuff("odd.bin", size)
    seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
    library = swarm.share(seed, source, BOOK)
    swarm.start_player(seed)
    swarm.start_player(leecher)
    swarm.give(leecher, library)
    swarm.wait_complete(library, [leecher], timeout=60)
    path = leecher.stuff_path(library.id_hex)
    assert path is not None and path.read_bytes() == source.read_bytes()


def test_two_libraries_at_once(swarm, stuff):
    first, second = stuff("one.bin", 12 * BOOK, seed=1), stuff("two.bin", 9 * BOOK + 77, seed=2)
    seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
    libraries = [swarm.share(seed, first, BOOK), swarm.share(seed, second, BOOK)]
    swarm.start_player(seed)
    swarm.start_player(leecher)
    for library in libraries:
        swarm.give(leecher, library)
    for library, source in zip(libraries, (first, second), strict=True):
        leecher.done_at = None
        swarm.wait_complete(library, [leecher], timeout=60)
        assert_identical(swarm, [leecher], library, source)


def test_a_lying_only_source_is_banned_the_download_stalls_then_completes_from_an_honest_seed(tmp_path, stuff):
    source = stuff("honest.bin", 30 * BOOK)
    liar_copy = stuff("liar.bin", 30 * BOOK, seed=99)  # same size, every book wrong
    with Swarm(tmp_path / "swarm", maestro=True) as swarm:
        swarm.start_hub()
        honest, liar, leecher = swarm.add_player("honest"), swarm.add_player("liar"), swarm.add_player("leecher")
        library = swarm.share(honest, source, BOOK)
        swarm.seed_with(liar, library, liar_copy)
        swarm.start_player(liar)  # the liar is the only source at first: it is certainly asked
        swarm.start_player(leecher)
        swarm.wait_serving([liar, leecher])
        swarm.give(leecher, library)
        client = ControlClient(run_dir(leecher.data_dir))

        def shown() -> tuple[str, str]:
            found = [d for d in client.downloads() if d.library_id == library.id_hex]
            return (state_word(found[0].state), found[0].detail) if found else ("", "")

        wait_for(lambda: shown()[0] == "stalled", 60, "the download to say it has no source")
        assert shown() == ("stalled", f"no source for {library.books} books")
        swarm.start_player(honest)
        swarm.wait_complete(library, [leecher], timeout=90)
        assert_identical(swarm, [leecher], library, source)
        assert shown()[0] == "seeding"
    liar_endpoint = distributor_endpoint(run_dir(liar.data_dir))
    bad = log_events(leecher, "events", "bad_book")
    # banned at the threshold, and nothing it sent afterwards (requests already on their way) was hashed
    assert [(event["endpoint"], event["banned"]) for event in bad] == [(liar_endpoint, False)] * (
        BAN_THRESHOLD - 1) + [(liar_endpoint, True)]


def test_requestor_sigkill_resumes_without_refetching(swarm, stuff):
    source = stuff("resume.bin", 64 * BOOK)
    seed = swarm.add_player("seed", upload_limit=256 * 1024)
    leecher = swarm.add_player("leecher")
    library = swarm.share(seed, source, BOOK)
    swarm.start_player(seed)
    swarm.start_player(leecher)
    swarm.give(leecher, library)
    wait_for(lambda: len(persisted_books(leecher, library.id_hex)) >= 16, 60, "a quarter of the books")
    swarm.kill_service(leecher, "requestor")
    kept = persisted_books(leecher, library.id_hex)
    assert 0 < len(kept) < library.books
    swarm.start_player(leecher, services=("requestor",))
    swarm.wait_complete(library, [leecher], timeout=90)
    assert_identical(swarm, [leecher], library, source)
    second = next(p for p in leecher.procs if p.name.endswith("requestor"))
    batches = [e["books"] for e in log_events(leecher, "debug", "books_written") if e.get("pid") == second.pid]
    refetched = [int(book) for batch in batches if isinstance(batch, list) for book in batch]
    assert refetched, "the restarted requestor fetched nothing"
    assert not kept & set(refetched), f"books verified before the kill were fetched again: {kept & set(refetched)}"
    assert len(refetched) <= library.books - len(kept)


def test_seed_leaves_and_leechers_finish_from_each_other(swarm, stuff):
    source = stuff("leave.bin", 48 * BOOK)
    seed = swarm.add_player("seed", upload_limit=512 * 1024)
    leechers = [swarm.add_player(f"l{i}") for i in range(3)]
    library = swarm.share(seed, source, BOOK)
    for player in [seed, *leechers]:
        swarm.start_player(player)
    for player in leechers:
        swarm.give(player, library)

    def union_complete() -> bool:
        held: set[int] = set().union(*(persisted_books(p, library.id_hex) for p in leechers))
        return len(held) == library.books

    wait_for(union_complete, 90, "the leechers to hold every book between them")
    swarm.stop_player(seed)
    swarm.wait_complete(library, leechers, timeout=90)
    assert_identical(swarm, leechers, library, source)


def test_hub_restart_mid_download(swarm, stuff):
    source = stuff("hub.bin", 48 * BOOK)
    seed = swarm.add_player("seed", upload_limit=256 * 1024)
    leecher = swarm.add_player("leecher")
    library = swarm.share(seed, source, BOOK)
    swarm.start_player(seed)
    swarm.start_player(leecher)
    swarm.give(leecher, library)
    wait_for(lambda: len(persisted_books(leecher, library.id_hex)) >= 4, 60, "the download to start")
    swarm.stop_hub()
    swarm.start_hub()
    late = swarm.add_player("late")
    swarm.start_player(late)
    swarm.give(late, library)
    swarm.wait_complete(library, [leecher, late], timeout=120)
    assert_identical(swarm, [leecher, late], library, source)


def test_under_maestros_killed_children_respawn_and_every_copy_completes(tmp_path, stuff):
    source = stuff("chaos.bin", 48 * BOOK)
    with Swarm(tmp_path / "maestro-swarm", maestro=True) as swarm:
        swarm.start_hub()
        seed = swarm.add_player("seed", upload_limit=384 * 1024)
        leechers = [swarm.add_player(f"l{i}") for i in range(2)]
        library = swarm.share(seed, source, BOOK)
        for player in [seed, *leechers]:
            swarm.start_player(player)
        for player in leechers:
            swarm.give(player, library)
        wait_for(lambda: len(persisted_books(leechers[0], library.id_hex)) >= 4, 60, "the download to start")
        before = swarm.child_pids(leechers[0])["requestor"]
        swarm.kill_service(leechers[0], "requestor")
        swarm.kill_service(seed, "distributor")
        wait_for(lambda: swarm.child_pids(leechers[0]).get("requestor", before) != before, 5, "a new requestor")
        swarm.wait_complete(library, leechers, timeout=120)
        assert_identical(swarm, leechers, library, source)


def test_three_hundred_fake_seeds_do_not_keep_a_download_from_the_real_one(clear_swarm, stuff):
    """Endpoints announced as seeds where nothing listens, or where a socket accepts and never speaks:
    the Requestor gives up on each within seconds, reports it, and finds the real seed among them
    once it comes. (In clear: the test announces the fakes by id, with no keys.)"""
    swarm = clear_swarm
    source = stuff("wanted.bin", 64 * BOOK)
    seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
    library = swarm.share(seed, source, BOOK)
    silent = []
    for _ in range(30):  # accepted by the kernel, never a ZMTP greeting
        listener = socketlib.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(512)
        silent.append(listener)
    closed = []
    for _ in range(270):  # nothing listens there: connections are refused
        probe = socketlib.socket()
        probe.bind(("127.0.0.1", 0))
        closed.append(probe.getsockname()[1])
        probe.close()
    endpoints = [f"tcp://127.0.0.1:{s.getsockname()[1]}" for s in silent] + [f"tcp://127.0.0.1:{p}" for p in closed]
    hub = HubClient(swarm.hub_endpoint, timeout=5.0)
    try:
        for n, endpoint in enumerate(endpoints):
            hub.announce(library.id, n.to_bytes(16, "big"), endpoint, AnnounceEvent.STARTED, left=0)
        swarm.start_player(leecher)
        swarm.give(leecher, library)
        # Only fakes are known yet: the leecher gives up on them and reports them (before the real seed
        # exists, so a fast download cannot finish first and leave nothing to check).
        wait_for(lambda: hub.health().requests["report"] > 0, 60, "the dead endpoints reported")
        swarm.start_player(seed)
        swarm.wait_complete(library, [leecher], timeout=90)
        assert_identical(swarm, [leecher], library, source)
    finally:
        hub.close()
        for listener in silent:
            listener.close()
    dropped = [e for e in log_events(leecher, "events", "peer_dropped") if e.get("reason") == "never answered"]
    assert dropped
