"""The book picker as readable scenarios.

Scenarios are short strings, one character per book:

- ``have``: ``*`` a book we hold, ``.`` one we lack;
- ``availability``: how many known peers hold each book (digits);
- a peer's books: ``*`` it holds the book.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.peer.bitfield import Bitfield
from services.peer.picker import RANDOM_FIRST, Picker
from tests.unit.patterns import bits

SEEDS = range(60)


def books(pattern: str) -> set[int]:
    return {index for index, mark in enumerate(pattern) if mark == "*"}


def make(have: str, availability: str = "", seed: int = 0) -> Picker:
    picker = Picker(bits(have), random.Random(seed))
    for index, count in enumerate(availability):
        picker.peer_has([index] * int(count))
    return picker


def everything(picker: Picker) -> set[int]:
    return set(range(picker.size))


# --- a selection: only the wanted books -----------------------------------------------------


def test_books_not_wanted_are_never_picked_and_the_picker_completes_without_them() -> None:
    picker = Picker(bits("*....."), random.Random(0), wanted=books("*.*..*"))
    for book in range(6):
        picker.peer_has([book])
    assert picker.missing == 2 and picker.unavailable() == 0
    assert sorted(picker.pick("A", everything(picker), 10)) == [2, 5]
    assert set(picker.pick("B", everything(picker), 10)) <= {2, 5}  # endgame duplicates: still only wanted ones
    picker.received(2, "A")
    picker.received(5, "A")
    assert picker.complete and not picker.wanted_from(everything(picker))


# --- what can be picked ----------------------------------------------------------------------


def test_picks_only_books_the_peer_has_and_we_lack() -> None:
    picker = make("**....", "111111")
    chosen = picker.pick("A", books("*.*.*."), 10)
    assert sorted(chosen) == [2, 4]
    assert picker.in_flight == {2: {"A"}, 4: {"A"}}


def test_pick_at_most_n() -> None:
    picker = make("......", "111111")
    assert len(picker.pick("A", everything(picker), 3)) == 3
    assert picker.missing == 6  # in flight is not held


@pytest.mark.parametrize("n", [0, -1])
def test_pick_nothing_when_n_is_not_positive(n: int) -> None:
    picker = make("....", "1111")
    assert picker.pick("A", everything(picker), n) == []
    assert picker.in_flight == {}


def test_pick_nothing_when_complete() -> None:
    picker = make("****", "1111")
    assert picker.complete
    assert picker.pick("A", everything(picker), 4) == []


def test_a_book_in_flight_is_not_asked_of_a_second_peer_before_endgame() -> None:
    picker = make("****..", "000011")
    assert picker.pick("A", books("....*."), 4) == [4]
    # B holds book 4 only: it is in flight to A, and book 5 is not in flight, so no endgame yet.
    assert not picker.endgame
    assert picker.pick("B", books("....*."), 4) == []
    assert picker.pick("B", books("....**"), 4) == [5]


# --- order: random first, then rarest first ------------------------------------------------


def test_rarest_first_once_a_few_books_are_held() -> None:
    picker = make("****......", "0000312132")
    chosen = picker.pick("A", everything(picker), 6)
    assert set(chosen[:2]) == {5, 7}  # held by one peer
    assert set(chosen[2:4]) == {6, 9}  # by two
    assert set(chosen[4:]) == {4, 8}  # by three


def test_random_among_equally_rare_books() -> None:
    firsts = {make("****....", "00001199", seed).pick("A", books("********"), 1)[0] for seed in SEEDS}
    assert firsts == {4, 5}


@pytest.mark.parametrize(("have", "rarest_only"), [("........", False), ("***.....", False), ("****....", True)])
def test_the_first_books_are_random(have: str, rarest_only: bool) -> None:
    """Below RANDOM_FIRST held books, any book may come first; from then on only the rarest."""
    assert (have.count("*") >= RANDOM_FIRST) == rarest_only
    availability = "99999199"  # book 5 is the rarest
    firsts = {make(have, availability, seed).pick("A", books("********"), 1)[0] for seed in SEEDS}
    if rarest_only:
        assert firsts == {5}
    else:
        assert len(firsts) > 1


def test_availability_counts_bitfields_and_haves_and_ignores_out_of_range() -> None:
    picker = make("...")
    picker.peer_has([0, 1, 2])
    picker.peer_has([1])
    picker.peer_has([-1, 3, 99])
    assert picker.availability == [1, 2, 1]


# --- endgame -----------------------------------------------------------------------------------


def test_endgame_asks_a_second_peer_for_books_in_flight() -> None:
    picker = make("****..", "000022")
    assert sorted(picker.pick("A", everything(picker), 4)) == [4, 5]
    assert picker.endgame
    assert sorted(picker.pick("B", everything(picker), 4)) == [4, 5]
    assert picker.in_flight == {4: {"A", "B"}, 5: {"A", "B"}}


def test_endgame_never_asks_the_same_peer_twice() -> None:
    picker = make("****..", "000011")
    picker.pick("A", everything(picker), 4)
    assert picker.pick("A", everything(picker), 4) == []


def test_endgame_only_asks_for_books_the_peer_has() -> None:
    picker = make("****..", "000021")
    picker.pick("A", everything(picker), 4)
    assert picker.pick("B", books("....*."), 4) == [4]


@pytest.mark.parametrize("seed", range(10))
def test_endgame_prefers_books_requested_from_fewest_peers(seed: int) -> None:
    picker = make("****..", "000033", seed)
    picker.pick("A", everything(picker), 2)
    [first] = picker.pick("B", everything(picker), 1)
    [second] = picker.pick("C", everything(picker), 1)
    assert {first, second} == {4, 5}


def test_received_names_the_peers_to_cancel() -> None:
    picker = make("****..", "000033")
    picker.pick("A", everything(picker), 2)
    picker.pick("B", everything(picker), 2)
    picker.pick("C", everything(picker), 2)
    assert set(picker.received(4, "B")) == {"A", "C"}
    assert 4 in picker.have and 4 not in picker.in_flight
    assert picker.missing == 1 and not picker.complete
    assert set(picker.received(5, "A")) == {"B", "C"}
    assert picker.complete and not picker.endgame and picker.in_flight == {}


def test_received_without_duplicates_cancels_nobody() -> None:
    picker = make("..", "11")
    picker.pick("A", everything(picker), 2)
    assert picker.received(0, "A") == []
    assert picker.in_flight == {1: {"A"}}


# --- peers going away and requests ending ----------------------------------------------------


def test_release_makes_a_book_pickable_again() -> None:
    picker = make("****..", "000011")
    [book] = picker.pick("A", books("....*."), 1)
    picker.release(book, "A")
    assert picker.in_flight == {}
    assert picker.pick("B", books("....*."), 1) == [4]


def test_release_of_an_unknown_request_is_harmless() -> None:
    picker = make("..", "11")
    picker.pick("A", everything(picker), 1)
    before = {k: set(v) for k, v in picker.in_flight.items()}
    picker.release(0, "nobody")
    picker.release(1, "A")
    assert picker.in_flight == before


def test_peer_gone_returns_its_requests_and_lowers_availability() -> None:
    picker = make("****..", "000022")
    picker.pick("A", everything(picker), 4)
    picker.pick("B", everything(picker), 1)
    assert sorted(picker.peer_gone("A", books("....**"))) == [4, 5]
    assert picker.availability == [0, 0, 0, 0, 1, 1]
    assert all("A" not in peers for peers in picker.in_flight.values())
    assert len(picker.in_flight) == 1  # B's request stays


def test_peer_gone_never_makes_availability_negative() -> None:
    picker = make("..", "01")
    assert picker.peer_gone("A", [0, 1, 1, 7, -2]) == []
    assert picker.availability == [0, 0]


def test_wanted_from() -> None:
    picker = make("**..", "1111")
    assert not picker.wanted_from(books("**.."))
    assert not picker.wanted_from(set())
    assert picker.wanted_from(books("..*."))


# --- properties --------------------------------------------------------------------------------


@given(
    have=st.lists(st.booleans(), min_size=1, max_size=40),
    peers=st.lists(st.tuples(st.sampled_from("ABCD"), st.sets(st.integers(0, 39)), st.integers(0, 8)), max_size=12),
    seed=st.integers(0, 2**16),
)
def test_picks_are_always_wanted_held_and_bounded(
    have: list[bool], peers: list[tuple[str, set[int], int]], seed: int
) -> None:
    picker = make("".join("*" if h else "." for h in have), seed=seed)
    for _, peer_books, _ in peers:
        picker.peer_has(peer_books)
    for peer, peer_books, n in peers:
        was_endgame = picker.endgame
        before = {book: set(who) for book, who in picker.in_flight.items()}
        chosen = picker.pick(peer, peer_books, n)
        assert len(chosen) <= n and len(set(chosen)) == len(chosen)
        for book in chosen:
            assert book in peer_books and book not in picker.have
            assert peer not in before.get(book, set())
            assert was_endgame or book not in before
            assert peer in picker.in_flight[book]


# --- a peer with nothing to give ----------------------------------------------------------------
def test_a_dry_peer_is_offered_a_book_another_peer_gave_back() -> None:
    picker = make("****....", "11112222")
    taken = sorted(picker.pick("b", books("********"), 2))  # b holds every book
    assert len(taken) == 2
    a_books = {index: True for index in taken}
    assert picker.pick("a", a_books, 2) == []  # all it holds is in flight at b
    picker.release(taken[0], "b")
    assert picker.pick("a", a_books, 2) == [taken[0]]


def test_a_dry_peer_that_announces_a_book_is_looked_at_again() -> None:
    picker = make("****....", "11112222")
    first = picker.pick("b", books("********"), 1)
    assert picker.pick("a", set(first), 1) == []
    assert picker.pick("a", set(first) | {7 if first != [7] else 6}, 1) != []


def test_a_dry_peer_gets_duplicates_once_endgame_begins() -> None:
    picker = make("****....", "11112222")
    first = picker.pick("b", books("********"), 1)
    assert picker.pick("a", set(first), 1) == []  # not endgame yet: its one book is in flight
    picker.pick("b", books("********"), 3)  # now every missing book is in flight
    assert picker.endgame
    assert picker.pick("a", set(first), 1) == first


def test_a_late_book_can_begin_endgame_for_a_dry_peer() -> None:
    picker = make("******..", "11111111")
    [first] = picker.pick("b", {6}, 1)
    assert picker.pick("a", {6}, 1) == []  # book 7 is not in flight: no endgame yet
    picker.received(7, "c")  # it came anyway (a request released before it arrived)
    assert picker.pick("a", {6}, 1) == [first]


def test_a_peer_back_with_other_books_is_looked_at_again() -> None:
    picker = make("******..", "11111111")
    picker.pick("b", {6, 7}, 1)
    held = {index for index in range(6)}  # only books we have
    assert picker.pick("a", held, 1) == []
    picker.peer_gone("a", sorted(held))
    held = {1, 2, 3, 4, 5, 6 if 6 not in picker.in_flight else 7}  # as many books, one we lack
    picker.peer_has(held)
    assert picker.pick("a", held, 1) != []


def test_askable_books_are_missing_wanted_and_not_in_flight() -> None:
    picker = Picker(bits("*...."), random.Random(0), wanted=books(".***."))
    assert not picker.askable([0, 4, 9])  # held, not wanted, out of range
    assert picker.askable([0, 2])
    picker.pick("a", {2}, 1)
    assert not picker.askable([2])  # in flight
    picker.release(2, "a")
    assert picker.askable([2])


def test_unavailable_counts_missing_books_no_known_peer_holds_in_flight_or_not() -> None:
    picker = make("*...", "0110")
    assert picker.unavailable() == 1  # book 3
    assert picker.pick("a", {1}, 1) == [1]
    assert picker.unavailable() == 1  # book 1 is in flight, and held by a peer
    picker.peer_gone("b", [1])  # the peer we knew held book 1 is gone; the request to a is not
    assert picker.unavailable() == 2
    picker.received(3, "c")
    assert picker.unavailable() == 1


def test_a_book_that_came_unasked_is_not_asked_for() -> None:
    picker = make("******..", "11111111")
    picker.received(6, "c")  # a late answer to a request given back
    assert picker.pick("a", {6, 7}, 2) == [7]


@pytest.mark.parametrize("peer_holds", [range(200), range(0, 200, 50)])  # a seed; a peer with four books
def test_the_first_books_are_random_candidates_from_a_seed_or_a_sparse_peer(peer_holds: range) -> None:
    picker = Picker(Bitfield(200), random.Random(7))
    picker.pick("b", set(range(0, 200, 100)), 1)  # book 0 or 100 is in flight at b
    chosen = picker.pick("a", set(peer_holds), 3)
    assert len(chosen) == 3 == len(set(chosen))
    assert all(book in peer_holds and book not in picker.in_flight.keys() - set(chosen) for book in chosen)
    assert all(picker.in_flight[book] == {"a"} for book in chosen)


def reference(picker: Picker, peer_books: set[int], n: int) -> list[int]:
    """What rarest-first should choose, written out the slow way: of the books the peer holds that we lack
    and have not asked anyone for, the n with the fewest holders (random rank among equals)."""
    candidates = [b for b in range(picker.size) if b in peer_books and b not in picker.have
                  and b not in picker.in_flight]
    return sorted(candidates, key=lambda b: (picker.availability[b], picker._rank[b]))[:n]


@given(st.lists(st.tuples(st.sampled_from("pbaAhrg"), st.integers(0, 3), st.integers(0, 139)), max_size=120),
       st.integers(0, 2**32))
def test_picks_are_the_rarest_a_peer_holds_whatever_happened_before(operations: list[tuple[str, int, int]],
                                                                     seed: int) -> None:
    """Requests, books, haves, give-backs and departures in any order: every pick outside the first
    random ones and endgame is what the slow reference chooses, given as a set or as a bitfield."""
    picker = Picker(bits("*****" + "." * 135), random.Random(seed))
    held: list[set[int]] = [set() for _ in range(4)]
    for kind, peer, book in operations:
        if kind in "pb":
            n = 1 + book % 40  # past FEW: the walk of the rarity order as well as the sort
            expected = None if picker.endgame else reference(picker, held[peer], n)
            offer = held[peer] if kind == "p" else as_bitfield(picker.size, held[peer])
            chosen = picker.pick(peer, offer, n)
            if expected is not None and expected:
                assert chosen == expected
            assert all(book in held[peer] and book not in picker.have for book in chosen)
        elif kind == "a" and book not in held[peer]:
            held[peer].add(book)
            picker.peer_has([book])
        elif kind == "A":  # a bitfield's worth: many candidates at once
            new = set(range(book, picker.size, 2)) - held[peer]
            held[peer] |= new
            picker.peer_has(sorted(new))
        elif kind == "h" and book not in picker.have:  # requested from it, or late: given back before it came
            picker.received(book, peer)
        elif kind == "r":
            picker.release(book, peer)
        elif kind == "g":  # it went and came back with as many books, others perhaps
            picker.peer_gone(peer, sorted(held[peer]))
            held[peer] = {(held_book + book) % picker.size for held_book in held[peer]}
            picker.peer_has(held[peer])


def as_bitfield(size: int, books: set[int]) -> Bitfield:
    field = Bitfield(size)
    for book in books:
        field.add(book)
    return field


def test_a_peer_holding_few_books_gets_the_books_the_walk_over_ours_would_give() -> None:
    # Two pickers in the same state; one is shown the peer's books as a Bitfield (its mask), the other as a
    # set (looked up book by book): the same rarest books.
    have, availability = "****" + "." * 60, "1111" + "3121" * 15
    peer = "...." + "*...." * 7 + "." * 25  # books 4, 9, 14, ...: availability 3, 1, 2, 1, 3, 1, 2
    assert len(bits(peer)) * 8 < 60  # few enough for the peer's side
    by_peer, by_order = make(have, availability, seed=5), make(have, availability, seed=5)
    for picker in (by_peer, by_order):
        assert picker.pick("B", {9}, 1) == [9]  # in flight elsewhere: never picked
    chosen = by_peer.pick("A", bits(peer), 3)
    assert chosen == by_order.pick("A", books(peer), 3)
    assert 9 not in chosen and sorted(by_peer.availability[b] for b in chosen) == [1, 1, 2]
