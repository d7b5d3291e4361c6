"""The token bucket on a fake clock: unlimited, burst, debt, long-run rate, live changes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.peer.ratelimit import TokenBucket

KIB = 1024
MIN_BURST = 64 * KIB


def test_zero_rate_is_unlimited() -> None:
    bucket = TokenBucket(0, now=0.0)
    for _ in range(100):
        assert bucket.ready(0.0)
        bucket.take(10 * 1024 * KIB, 0.0)
    assert bucket.wait(0.0) == 0.0


@pytest.mark.parametrize(("rate", "burst"), [(1000, MIN_BURST), (10 * 1024 * KIB, 512 * KIB)])
def test_starts_full_with_a_burst_of_at_least_64_kib(rate: int, burst: float) -> None:
    bucket = TokenBucket(rate, now=0.0)
    assert bucket.burst == burst
    assert bucket.tokens == burst
    assert bucket.ready(0.0) and bucket.wait(0.0) == 0.0


def test_a_transfer_larger_than_the_burst_goes_out_and_leaves_a_debt() -> None:
    bucket = TokenBucket(100 * KIB, now=0.0)
    bucket.take(MIN_BURST + 200 * KIB, 0.0)
    assert not bucket.ready(0.0)
    assert bucket.wait(0.0) == pytest.approx(2.0)
    assert not bucket.ready(1.9)
    assert bucket.wait(1.9) == pytest.approx(0.1)
    assert bucket.ready(2.0)


def test_zero_balance_is_ready() -> None:
    bucket = TokenBucket(100 * KIB, now=0.0)
    bucket.take(MIN_BURST, 0.0)
    assert bucket.ready(0.0)


def test_refill_is_capped_at_the_burst() -> None:
    bucket = TokenBucket(100 * KIB, now=0.0)
    bucket.take(MIN_BURST, 0.0)
    bucket.ready(1000.0)
    assert bucket.tokens == MIN_BURST


def test_set_rate_refills_to_the_new_burst() -> None:
    bucket = TokenBucket(100 * KIB, now=0.0)
    bucket.take(10 * MIN_BURST, 0.0)
    bucket.set_rate(10 * 1024 * KIB, 1.0)
    assert bucket.rate == 10 * 1024 * KIB
    assert bucket.tokens == 512 * KIB and bucket.ready(1.0)


def test_set_rate_to_zero_lifts_the_limit_and_back_limits_again() -> None:
    bucket = TokenBucket(10 * KIB, now=0.0)
    bucket.take(10 * MIN_BURST, 0.0)
    bucket.set_rate(0, 1.0)
    assert bucket.ready(1.0) and bucket.wait(1.0) == 0.0
    bucket.set_rate(10 * KIB, 2.0)
    bucket.take(MIN_BURST + 10 * KIB, 2.0)
    assert bucket.wait(2.0) == pytest.approx(1.0)


def test_negative_rate_means_unlimited() -> None:
    bucket = TokenBucket(-5, now=0.0)
    assert bucket.rate == 0
    bucket.take(10**9, 0.0)
    assert bucket.ready(0.0)


@given(
    rate=st.integers(16 * KIB, 1024 * KIB),
    chunk=st.integers(16 * KIB, 4 * 1024 * KIB),
    seconds=st.integers(5, 60),
)
def test_long_run_rate_is_the_set_rate(rate: int, chunk: int, seconds: int) -> None:
    """A sender that waits as told sends rate x time, plus one burst and one chunk at most.

    It waits a nanosecond longer than told: ``wait`` is computed in floating point.
    """
    bucket = TokenBucket(rate, now=0.0)
    now, sent = 0.0, 0
    while True:
        now += bucket.wait(now) + 1e-9
        if now > seconds:
            break
        assert bucket.ready(now)
        bucket.take(chunk, now)
        sent += chunk
    assert sent <= rate * seconds + bucket.burst + chunk
    assert sent >= rate * seconds - chunk
