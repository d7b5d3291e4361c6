"""The Maestro under load, on a fake clock: a late turn restarts the hang clocks, frames it drops
are all counted but logged at most once per period, and a crashing child's last words join its
failure whichever comes first."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.supervisor.child import Child
from services.supervisor.maestro import Maestro, Supervised, Tally
from services.supervisor.policy import LATE_TURN, RestartPolicy, ServiceState

INTERVAL = 0.5
DEADLINE = 1.45  # liveness 3 x 0.5 s, less HANG_EARLY
ON_TIME = LATE_TURN * INTERVAL  # 0.25 s: turns this far apart are on time


def running_at(now: float) -> RestartPolicy:
    policy = RestartPolicy(interval=INTERVAL)
    policy.spawned(now)
    policy.beat(now)
    policy.turn(now)
    return policy


def turns(policy: RestartPolicy, *times: float) -> list[float]:
    return [policy.turn(t) for t in times]


# --- a Maestro that keeps up -------------------------------------------------------------------


def test_turns_on_time_are_not_late_and_a_silent_child_is_hung_at_the_deadline() -> None:
    policy = running_at(0.0)
    assert turns(policy, 0.02, 0.04, 0.24, 0.44, 0.64, 0.84, 1.04, 1.24, 1.44) == [0.0] * 9
    assert not policy.hung(DEADLINE - 0.01)
    policy.turn(DEADLINE + 0.01)
    assert policy.hung(DEADLINE + 0.01)


def test_a_turn_exactly_at_the_bound_is_on_time() -> None:
    policy = running_at(0.0)
    assert policy.turn(ON_TIME) == 0.0
    assert policy.turn(ON_TIME + ON_TIME + 0.001) == pytest.approx(ON_TIME + 0.001)


def test_the_first_turn_is_never_late() -> None:
    policy = RestartPolicy(interval=INTERVAL)
    policy.spawned(0.0)
    assert policy.turn(100.0) == 0.0


# --- a Maestro that fell behind ----------------------------------------------------------------


def test_a_late_turn_restarts_the_hang_clock() -> None:
    policy = running_at(0.0)
    assert policy.turn(8.0) == pytest.approx(8.0)  # the Maestro was busy for 8 s: beats may wait unread
    assert not policy.hung(8.0)
    assert not policy.hung(8.0 + DEADLINE - 0.01)
    assert policy.hung(8.0 + DEADLINE + 0.01)  # a full deadline of silence with the Maestro keeping up


def test_a_beat_read_after_a_late_turn_counts_from_its_reading() -> None:
    policy = running_at(0.0)
    policy.turn(8.0)
    policy.beat(8.1)  # timed when read, after the drain
    assert policy.heartbeat_age(8.2) == pytest.approx(0.1)
    assert not policy.hung(8.1 + DEADLINE - 0.01)
    assert policy.hung(8.1 + DEADLINE + 0.01)


def test_the_hang_clock_never_goes_back() -> None:
    policy = running_at(0.0)
    policy.turn(5.0)
    policy.beat(4.0)  # a beat timed before the late turn does not undo it
    assert not policy.hung(5.0 + DEADLINE - 0.01)


def test_a_starting_child_gets_its_whole_startup_timeout_after_a_late_turn() -> None:
    policy = RestartPolicy(interval=INTERVAL, startup_timeout=10.0)
    policy.spawned(0.0)
    policy.turn(0.0)
    policy.turn(9.0)
    assert not policy.hung(18.9)
    assert policy.hung(19.1)


@pytest.mark.parametrize("state", [ServiceState.OFF, ServiceState.BACKOFF, ServiceState.FATAL])
def test_a_late_turn_does_not_revive_anything(state: ServiceState) -> None:
    policy = RestartPolicy(state=state, last_beat=0.0)
    policy.turn(0.0)
    policy.turn(50.0)
    assert policy.state is state and not policy.hung(100.0)


def test_the_bound_follows_the_heartbeat_interval() -> None:
    policy = RestartPolicy(interval=2.0)
    policy.turn(0.0)
    assert policy.turn(1.0) == 0.0  # half an interval
    assert policy.turn(2.01) == pytest.approx(1.01)


# --- dropped frames ----------------------------------------------------------------------------


def test_a_flood_is_counted_in_full_and_logged_once_per_period() -> None:
    tally = Tally(every=10.0)
    logged = [tally.add(5.0 + i * 0.001) for i in range(1000)]
    assert tally.total == 1000
    assert logged[0] == 1 and sum(logged) == 1  # the first at once, the rest held back
    assert tally.due(14.9) == 0
    assert tally.due(15.0) == 999  # the tail comes out once the period is over, even with no new frame
    assert tally.due(100.0) == 0


def test_frames_apart_are_each_logged() -> None:
    tally = Tally(every=10.0)
    assert [tally.add(t) for t in (0.0, 10.0, 25.0)] == [1, 1, 1]
    assert tally.total == 3


# --- last words --------------------------------------------------------------------------------

WORDS = "crashed: OperationalError: database or disk is full"


def supervised() -> Supervised:
    return Supervised(Child("requestor", "services.peer.requestor", [], Path("/nonexistent/requestor.out")),
                      running_at(0.0))


def test_last_words_heard_after_the_exit_join_the_failure() -> None:
    sup = supervised()
    sup.policy.failed(1.0, "exited with status 1")
    Maestro._heard_last_words(sup, WORDS)
    Maestro._heard_last_words(sup, WORDS)  # said twice, shown once
    assert sup.policy.last_reason == f"exited with status 1 ({WORDS})"


def test_last_words_heard_before_the_exit_wait_for_it() -> None:
    sup = supervised()
    Maestro._heard_last_words(sup, WORDS)
    assert sup.policy.last_reason == ""
    assert sup.last_words == WORDS
