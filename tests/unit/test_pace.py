"""A player's pace: books gained per second, from its count of books over time (fake clock)."""

from __future__ import annotations

import pytest

from services.peer.pace import Pace


def test_the_first_sample_has_no_pace_and_later_ones_average_with_the_last() -> None:
    pace = Pace()
    assert pace.sample(10, 0.0) == 0.0
    assert pace.sample(14, 0.5) == pytest.approx(8.0)
    assert pace.sample(14, 1.0) == pytest.approx(4.0)  # nothing new for half a second: half the pace


def test_a_count_that_falls_or_a_clock_that_stands_still_gains_nothing() -> None:
    pace = Pace()
    pace.sample(10, 0.0)
    assert pace.sample(5, 1.0) == 0.0  # a peer that came back with fewer books
    assert pace.sample(9, 1.0) == 0.0  # no time passed: no sample
