"""The hub client's choice of hub, with a fake clock: shuffle once, the one that answered first,
a hub that failed three times in a row skipped for a while."""

from __future__ import annotations

import random

from services.hub.client import FAILURES_TO_SKIP, SKIP_SECONDS, HubOrder

HUBS = [f"tcp://10.0.0.{n}:7000" for n in range(1, 5)]


def test_the_list_is_shuffled_once_and_players_spread_over_the_hubs() -> None:
    firsts = {HubOrder(HUBS, random.Random(seed)).next(0.0) for seed in range(40)}
    assert firsts == set(HUBS)
    order = HubOrder(HUBS, random.Random(3))
    assert sorted(order.endpoints) == sorted(HUBS)
    assert [order.next(t) for t in range(5)] == [order.endpoints[0]] * 5


def test_without_a_shuffle_the_given_order_holds_and_duplicates_go() -> None:
    assert HubOrder([*HUBS, HUBS[0]]).endpoints == HUBS


def test_the_hub_that_answered_moves_to_the_front() -> None:
    order = HubOrder(HUBS)
    order.answered(HUBS[2])
    assert order.endpoints[0] == HUBS[2] and order.next(0.0) == HUBS[2]


def test_after_a_failure_the_next_hub_is_asked() -> None:
    order = HubOrder(HUBS)
    order.failed(HUBS[0], 0.0)
    assert order.next(0.0, after=HUBS[0]) == HUBS[1]
    assert order.next(0.0, after=HUBS[3]) == HUBS[0]  # wraps; one failure does not skip a hub


def test_three_failures_in_a_row_skip_a_hub_for_a_while() -> None:
    order = HubOrder(HUBS)
    for _ in range(FAILURES_TO_SKIP):
        order.failed(HUBS[0], 10.0)
    assert order.skipped(10.0) == [HUBS[0]]
    assert order.next(10.0) == HUBS[1]
    assert order.next(10.0, after=HUBS[3]) == HUBS[1]
    assert order.next(10.0 + SKIP_SECONDS) == HUBS[0]


def test_an_answer_in_between_resets_the_count() -> None:
    order = HubOrder(HUBS)
    for _ in range(FAILURES_TO_SKIP - 1):
        order.failed(HUBS[1], 0.0)
    order.answered(HUBS[1])
    order.failed(HUBS[1], 0.0)
    assert order.skipped(0.0) == []


def test_when_every_hub_is_skipped_they_are_still_asked() -> None:
    order = HubOrder(HUBS[:2])
    for hub in HUBS[:2]:
        for _ in range(FAILURES_TO_SKIP):
            order.failed(hub, 0.0)
    assert order.skipped(0.0) == HUBS[:2]
    assert order.next(0.0) == HUBS[0]
    assert order.next(0.0, after=HUBS[0]) == HUBS[1]
