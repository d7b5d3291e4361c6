"""The restart policy on a fake clock: states, backoff, restart intensity, liveness."""

from __future__ import annotations

import pytest

from services.supervisor.policy import RestartPolicy, ServiceState

OFF, STARTING, RUNNING, BACKOFF, FATAL = (
    ServiceState.OFF, ServiceState.STARTING, ServiceState.RUNNING, ServiceState.BACKOFF, ServiceState.FATAL,
)


def running(now: float = 0.0, **options: float) -> RestartPolicy:
    policy = RestartPolicy(**options)  # type: ignore[arg-type]
    policy.spawned(now)
    policy.beat(now)
    return policy


def crash_and_respawn(policy: RestartPolicy, now: float) -> float:
    """Fail at ``now`` and respawn when due; returns the backoff that was waited."""
    assert policy.failed(now, "exit 1") is BACKOFF
    waited = policy.retry_at - now
    assert policy.due(policy.retry_at)
    policy.spawned(policy.retry_at)
    return waited


# --- states ----------------------------------------------------------------------------------


def test_lifecycle_off_starting_running() -> None:
    policy = RestartPolicy()
    assert policy.state is OFF
    policy.spawned(1.0)
    assert policy.state is STARTING and policy.last_beat is None
    policy.beat(1.2)
    assert policy.state is RUNNING and policy.last_beat == 1.2


@pytest.mark.parametrize("state", [OFF, BACKOFF, FATAL])
def test_a_late_beat_does_not_revive_a_service(state: ServiceState) -> None:
    policy = RestartPolicy(state=state)
    policy.beat(5.0)
    assert policy.state is state and policy.last_beat is None


def test_failure_goes_to_backoff_and_is_due_after_it() -> None:
    policy = running(0.0)
    assert policy.failed(1.0, "exit 3") is BACKOFF
    assert policy.last_reason == "exit 3"
    assert policy.retry_at == pytest.approx(1.1)
    assert not policy.due(1.05)
    assert policy.due(1.1)


def test_a_service_that_says_it_cannot_run_is_fatal_at_once_and_can_be_started_again() -> None:
    policy = running(0.0)
    assert policy.failed(0.5, "exit 78: cannot listen", hopeless=True) is FATAL
    assert not policy.due(1e9) and policy.last_reason == "exit 78: cannot listen"
    assert policy.start_requested()  # `emma services --start` once the setting is fixed


@pytest.mark.parametrize("state", [OFF, STARTING, RUNNING, FATAL])
def test_only_backoff_is_ever_due(state: ServiceState) -> None:
    assert not RestartPolicy(state=state).due(1e9)


def test_stopped_is_off_and_forgets_failures() -> None:
    policy = running(0.0)
    policy.failed(1.0, "exit 1")
    policy.stopped()
    assert policy.state is OFF and not policy.failures and policy.backoff == 0.0


# --- backoff ---------------------------------------------------------------------------------


def test_backoff_doubles_from_a_tenth_of_a_second_to_five() -> None:
    policy = running(0.0, max_failures=100)
    now, waits = 0.0, []
    for _ in range(9):
        now += 0.5
        waits.append(crash_and_respawn(policy, now))
        now = policy.retry_at
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])


def test_backoff_resets_after_a_stable_period() -> None:
    policy = running(0.0, max_failures=100)
    for now in (1.0, 2.0, 3.0):
        crash_and_respawn(policy, now)
    assert policy.backoff == pytest.approx(0.4)
    started = policy.started_at
    policy.beat(started + 10.0)  # stable_after
    assert policy.backoff == 0.0
    assert crash_and_respawn(policy, started + 11.0) == pytest.approx(0.1)


def test_backoff_resets_when_a_long_run_ends_without_a_late_beat() -> None:
    policy = running(0.0, max_failures=100)
    for now in (1.0, 2.0, 3.0):
        crash_and_respawn(policy, now)
    started = policy.started_at
    policy.beat(started + 1.0)
    assert crash_and_respawn(policy, started + 20.0) == pytest.approx(0.1)


def test_a_short_run_keeps_doubling() -> None:
    policy = running(0.0, max_failures=100)
    crash_and_respawn(policy, 1.0)
    policy.beat(policy.started_at + 9.9)
    assert crash_and_respawn(policy, policy.started_at + 9.95) == pytest.approx(0.2)


def test_a_crash_while_starting_never_resets_backoff() -> None:
    policy = running(0.0, max_failures=100)
    crash_and_respawn(policy, 1.0)
    # never beat after the respawn, and fails long after it
    assert crash_and_respawn(policy, policy.started_at + 60.0) == pytest.approx(0.2)


# --- restart intensity -----------------------------------------------------------------------


def test_more_than_max_failures_in_the_window_is_fatal() -> None:
    policy = running(0.0, max_failures=5, window=30.0)
    for now in (1.0, 2.0, 3.0, 4.0, 5.0):
        crash_and_respawn(policy, now)
    assert policy.state is STARTING  # five failures: still restarting
    assert policy.failed(6.0, "exit 1") is FATAL
    assert policy.state is FATAL and not policy.due(1e9)


def test_failures_older_than_the_window_are_forgotten() -> None:
    policy = running(0.0, max_failures=2, window=10.0)
    crash_and_respawn(policy, 1.0)
    crash_and_respawn(policy, 2.0)
    assert policy.failed(12.5, "exit 1") is BACKOFF  # 1.0 and 2.0 are out of the window
    assert list(policy.failures) == [12.5]


def test_failure_exactly_at_the_window_edge_still_counts() -> None:
    policy = running(0.0, max_failures=1, window=10.0)
    crash_and_respawn(policy, 1.0)
    assert policy.failed(11.0, "exit 1") is FATAL


# --- liveness --------------------------------------------------------------------------------


def test_hung_after_liveness_intervals_without_a_beat() -> None:
    policy = running(0.0, interval=0.5, liveness=3)
    policy.beat(10.0)
    assert not policy.hung(11.44)  # 3 x 0.5, less the margin that keeps detection within 1.5 s of a hang
    assert policy.hung(11.46)
    policy.beat(11.6)
    assert not policy.hung(12.0)


def test_hung_when_a_start_never_beats() -> None:
    policy = RestartPolicy(startup_timeout=10.0)
    policy.spawned(0.0)
    assert not policy.hung(10.0)
    assert policy.hung(10.1)


@pytest.mark.parametrize("state", [OFF, BACKOFF, FATAL])
def test_never_hung_when_not_running(state: ServiceState) -> None:
    assert not RestartPolicy(state=state, last_beat=0.0).hung(1e6)


# --- the CLI ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "allowed"), [(OFF, True), (FATAL, True), (STARTING, False),
                                                (RUNNING, False), (BACKOFF, False)])
def test_start_requested_only_from_off_or_fatal(state: ServiceState, allowed: bool) -> None:
    policy = RestartPolicy(state=state, backoff=3.2)
    policy.failures.extend([1.0, 2.0])
    assert policy.start_requested() is allowed
    assert (not policy.failures) is allowed
    assert (policy.backoff == 0.0) is allowed


def test_fatal_started_again_gets_a_fresh_budget() -> None:
    policy = running(0.0, max_failures=1)
    crash_and_respawn(policy, 1.0)
    assert policy.failed(2.0, "exit 1") is FATAL
    assert policy.start_requested()
    policy.spawned(3.0)
    assert crash_and_respawn(policy, 4.0) == pytest.approx(0.1)


def test_uptime_and_heartbeat_age() -> None:
    policy = RestartPolicy()
    assert policy.uptime(5.0) == 0.0 and policy.heartbeat_age(5.0) == -1.0
    policy.spawned(5.0)
    assert policy.uptime(7.0) == 2.0
    policy.beat(8.0)
    assert policy.heartbeat_age(8.25) == 0.25
    policy.failed(9.0, "exit 1")
    assert policy.uptime(9.5) == 0.0
