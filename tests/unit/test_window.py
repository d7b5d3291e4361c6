"""The credit window: additive increase per book, halving on busy or timeout, fake clock."""

from __future__ import annotations

import pytest

from services.peer.window import Held, Window

LIB = b"L" * 32



def land(window: Window, k: tuple[bytes, int]) -> bool:
    """A book arrives and is written: what the requestor reports to the window."""
    arrived = window.arrived(k, 0.0)
    window.landed(k)
    return arrived

def key(book: int) -> tuple[bytes, int]:
    return (LIB, book)


def fill(window: Window, count: int, now: float = 0.0, first: int = 0) -> None:
    for book in range(first, first + count):
        window.on_send(key(book), now)


def test_starts_with_initial_credit() -> None:
    window = Window(initial=4)
    assert window.size == 4 and window.credit == 4


def test_credit_falls_as_requests_go_out() -> None:
    window = Window(initial=4)
    fill(window, 3)
    assert window.credit == 1
    fill(window, 2, first=3)
    assert window.credit == 0  # never negative


def test_each_book_adds_one() -> None:
    window = Window(initial=4, maximum=32)
    fill(window, 4)
    assert land(window, key(0)) is True
    assert window.size == 5 and window.credit == 2  # 5 allowed, 3 still out


def test_growth_stops_at_maximum() -> None:
    window = Window(initial=4, maximum=6)
    for book in range(10):
        window.on_send(key(book), 0.0)
        land(window, key(book))
    assert window.size == 6


def test_a_book_not_in_flight_does_not_grow_the_window() -> None:
    window = Window(initial=4)
    assert land(window, key(9)) is False
    assert window.size == 4
    fill(window, 1)
    land(window, key(0))
    assert land(window, key(0)) is False  # a late duplicate
    assert window.size == 5


@pytest.mark.parametrize(("start", "after"), [(8, 4.0), (5, 2.5), (1, 1.0)])
def test_busy_halves_never_below_one(start: int, after: float) -> None:
    window = Window(initial=start)
    fill(window, 1)
    window.on_busy(key(0))
    assert window.size == after
    assert window.sent == {}


def test_busy_twice_from_one_keeps_one() -> None:
    window = Window(initial=2)
    window.on_busy(key(0))
    window.on_busy(key(1))
    assert window.size == 1 and window.credit == 1


def test_advertised_slots_cap_the_window() -> None:
    window = Window(initial=8, maximum=32)
    window.advertise(3)
    assert (window.limit, window.size) == (3, 3)
    for book in range(5):
        window.on_send(key(book), 0.0)
        land(window, key(book))
    assert window.size == 3


def test_advertise_cannot_exceed_maximum() -> None:
    window = Window(initial=4, maximum=10)
    window.advertise(1000)
    assert window.limit == 10 and window.size == 4


@pytest.mark.parametrize("slots", [0, -5])
def test_advertise_ignores_no_slots(slots: int) -> None:
    window = Window(initial=4, maximum=10)
    window.advertise(slots)
    assert (window.limit, window.size) == (10, 4)


def test_advertise_higher_later_lets_the_window_grow_again() -> None:
    window = Window(initial=4, maximum=32)
    window.advertise(2)
    window.advertise(16)
    fill(window, 2)
    land(window, key(0))
    land(window, key(1))
    assert window.size == 4


def test_expired_after_the_timeout_only() -> None:
    window = Window(initial=8, timeout=15.0)
    window.on_send(key(0), 100.0)
    window.on_send(key(1), 105.0)
    assert window.expired(115.0) == []  # exactly the timeout is not late
    assert window.size == 8
    assert window.expired(115.5) == [key(0)]
    assert window.size == 4
    assert list(window.sent) == [key(1)]


def test_several_expire_together_halve_once() -> None:
    window = Window(initial=8, timeout=1.0)
    fill(window, 3, now=0.0)
    assert sorted(window.expired(2.0)) == [key(0), key(1), key(2)]
    assert window.size == 4
    assert window.credit == 4


def test_forget_says_whether_it_was_in_flight_and_keeps_size() -> None:
    window = Window(initial=4)
    fill(window, 1)
    assert window.forget(key(0)) is True
    assert window.forget(key(0)) is False
    assert window.size == 4 and window.credit == 4


def test_keys_are_per_library() -> None:
    window = Window(initial=4)
    window.on_send((b"A" * 32, 1), 0.0)
    assert land(window, (b"B" * 32, 1)) is False
    assert land(window, (b"A" * 32, 1)) is True


def test_a_book_holds_its_credit_until_written() -> None:
    window = Window(initial=2, maximum=8)
    window.on_send(key(0), 0.0)
    window.on_send(key(1), 0.0)
    assert window.credit == 0
    assert window.arrived(key(0), 0.0)
    assert window.credit == 0  # received, not yet written: memory still held
    window.landed(key(0))
    assert window.credit == 2  # the slot is back and the window grew by one
    assert window.expired(1000.0) == [key(1)]  # only requests on the network can time out


def test_held_bytes_follow_every_way_a_book_leaves_the_window() -> None:
    window = Window(initial=8, timeout=10.0)
    for book in range(5):
        window.on_send(key(book), 0.0, 1000 + book)
    assert window.held_bytes == 5010
    assert window.arrived(key(0), 0.0)
    assert window.held_bytes == 5010  # arrived, not yet written: still held
    window.landed(key(0))
    assert window.held_bytes == 4010
    assert window.forget(key(1))
    window.on_busy(key(2))
    assert window.held_bytes == 1003 + 1004
    assert window.expired(11.0) == [key(3), key(4)]
    assert window.held_bytes == 0 and window.sizes == {}


def test_a_book_requested_again_is_counted_once() -> None:
    window = Window(initial=8)
    window.on_send(key(0), 0.0, 500)
    window.on_send(key(0), 1.0, 500)
    assert window.held_bytes == 500
    assert not window.forget(key(9)) and window.held_bytes == 500


# --- following what the peer delivers ------------------------------------------------------------------


BOOK = 100_000


def deliver(window: Window, books: int, every: float, start: float = 0.0) -> float:
    """``books`` requested at ``start`` arrive one per ``every`` seconds and are written; returns the end."""
    for book in range(books):
        window.on_send(key(book), start, BOOK)
    now = start
    for book in range(books):
        now += every
        assert window.arrived(key(book), now)
        window.landed(key(book))
    return now


def test_a_peer_that_delivers_slowly_gets_few_requests_at_a_time() -> None:
    window = Window(initial=8, maximum=64)
    deliver(window, 8, every=0.1)  # 1 MB/s, the shortest round trip 0.1 s
    assert window.rate == pytest.approx(1_000_000)
    assert window.rtt_min == pytest.approx(0.1)
    assert int(window.size) == 2  # 1 MB/s x (0.1 s + slack) is one and a half books, plus one to probe


def test_a_fast_peer_keeps_the_window_it_earned() -> None:
    window = Window(initial=8, maximum=64)
    deliver(window, 8, every=0.001)  # 100 MB/s
    assert window.size == 16  # 8 + one per book written: the rate supports far more


def test_requests_queued_at_the_peer_lengthen_the_round_trip_and_shrink_the_window() -> None:
    window = Window(initial=4, maximum=64)
    end = deliver(window, 4, every=0.01)  # alone at the peer: 10 MB/s, 0.01 s round trips
    grown = window.size
    deliver(window, 8, every=0.1, start=end)  # now the peer is shared: 1 MB/s, long waits
    assert window.size < grown and int(window.size) <= 3


def test_windows_of_one_requestor_tally_their_bytes_together_and_a_closed_one_gives_its_bytes_back() -> None:
    pool = Held()
    first, second = Window(pool=pool), Window(pool=pool)
    first.on_send(key(1), 0.0, 100)
    first.on_send(key(2), 0.0, 50)
    second.on_send(key(3), 0.0, 30)
    assert pool.bytes == 180 == first.held_bytes + second.held_bytes
    assert first.forget(key(2)) and pool.bytes == 130
    second.arrived(key(3), 0.1)
    second.landed(key(3))
    assert pool.bytes == 100
    first.close()
    assert pool.bytes == 0 and first.held_bytes == 0
