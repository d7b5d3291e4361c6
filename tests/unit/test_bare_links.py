"""The bare run's plan: who sends whom how many bytes (tools/bare_links.py)."""

from __future__ import annotations

import pytest

from tools.bare_links import plan

SIZE = 32 * 1024 * 1024


@pytest.mark.parametrize("uploads", [
    [2.5e6] * 17,  # 1 + 16, equal links
    [12.5e6] * 8 + [2.5e6] * 9,  # the seed and 7 leechers at 100 Mbit/s, 9 at 20
    [2.5e6, 12.5e6, 12.5e6, 1.0e6],  # a slow seed
])
def test_every_leecher_receives_the_size_and_every_host_sends_for_the_same_time(uploads):
    shares = plan(uploads, SIZE)
    count = len(uploads)
    assert [shares[i][0] for i in range(count)] == [0] * count  # the seed receives nothing
    assert [shares[i][i] for i in range(count)] == [0] * count  # nor does anyone send to itself
    for j in range(1, count):
        assert abs(sum(shares[i][j] for i in range(count)) - SIZE) <= count
    spend = (count - 1) * SIZE / sum(uploads)
    for i, up in enumerate(uploads):
        assert sum(shares[i]) / up == pytest.approx(spend, rel=1e-3)


def test_a_lone_leecher_gets_everything_from_the_seed():
    assert plan([1e6, 5e6], 1000) == [[0, 1000], [0, 0]]


def test_where_balance_cannot_be_had_every_leecher_still_receives_the_size():
    shares = plan([1e6, 1e6, 1e6], 999)  # two leechers: the seed must send more than its share of the time
    assert [shares[0][1] + shares[2][1], shares[0][2] + shares[1][2]] == [999, 999]
