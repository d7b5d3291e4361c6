"""The restart policy on a fake clock: states, backoff, restart intensity, liveness, and what ``poll`` and
``stop_requested`` tell the Maestro to do (TERM, KILL after a grace, respawn) -- the timings the Maestro
keeps, proved without a real clock; real timings are tools/bench_supervisor.py's figures."""

from __future__ import annotations

import pytest

from services.supervisor.policy import MAX_STARTUP, Action, Decision, Ending, RestartPolicy, ServiceState

OFF, STARTING, RUNNING, BACKOFF, FATAL, STOPPING = (
    ServiceState.OFF, ServiceState.STARTING, ServiceState.RUNNING, ServiceState.BACKOFF, ServiceState.FATAL,
    ServiceState.STOPPING,
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


# --- slow start-ups --------------------------------------------------------------------------


def test_a_start_up_that_timed_out_gets_twice_the_time_next_and_a_beat_resets_it() -> None:
    policy = RestartPolicy(startup_timeout=10.0, max_failures=100)
    now = 0.0
    allowances = []
    for _ in range(6):
        policy.spawned(now)
        allowances.append(policy.startup_timeout)
        now += policy.startup_timeout + 0.1
        assert policy.hung(now)
        assert policy.hang_reason(now) == f"hung: no first heartbeat within {policy.startup_timeout:.0f}s of start"
        policy.failed(now, policy.hang_reason(now))
        now = policy.retry_at
    assert allowances == [10.0, 20.0, 40.0, 80.0, 160.0, 160.0]
    policy.spawned(now)
    assert not policy.hung(now + 150.0)  # still within the grown allowance
    policy.beat(now + 150.0)
    assert policy.startup_timeout == 10.0
    assert policy.hang_reason(now + 152.0) == "hung: no heartbeat for 2.00s"


def test_a_child_that_exits_at_start_up_does_not_grow_the_allowance() -> None:
    policy = RestartPolicy(startup_timeout=10.0)
    policy.spawned(0.0)
    policy.failed(1.0, "exited with status 1")
    assert policy.startup_timeout == 10.0


# --- poll: what the Maestro does each turn, on a fake clock ------------------------------------

NONE, TERMINATE, KILL, SPAWN = Action.NONE, Action.TERMINATE, Action.KILL, Action.SPAWN
ALIVE = None  # the exit status of a process that still runs


def test_an_exit_is_a_failure_and_the_respawn_comes_after_the_first_backoff() -> None:
    policy = running(0.0)
    decision = policy.poll(5.0, 1)
    assert decision == Decision(failure="exited with status 1") and policy.state is BACKOFF
    assert policy.poll(5.0 + 0.099, 1).action is NONE
    assert policy.poll(5.1, 1).action is SPAWN  # back within the first backoff of the crash being seen
    assert policy.restarts == 1
    policy.spawned(5.1)
    assert policy.poll(5.2, ALIVE) == Decision() and policy.state is STARTING


def test_a_running_child_that_beats_is_left_alone() -> None:
    policy = running(0.0, interval=0.5)
    for tick in range(1, 400):
        now = tick * 0.05
        if tick % 10 == 0:
            policy.beat(now)
        assert policy.poll(now, ALIVE) == Decision()
    assert policy.state is RUNNING and policy.restarts == 0


def test_a_hang_is_terminated_then_killed_after_the_grace_and_respawned_once_gone() -> None:
    policy = running(0.0, interval=0.5, liveness=3, hang_grace=0.3)
    assert policy.poll(1.44, ALIVE) == Decision()
    decision = policy.poll(1.46, ALIVE)  # noticed within liveness intervals of the last beat
    assert decision.action is TERMINATE and decision.failure == "hung: no heartbeat for 1.46s"
    assert policy.state is BACKOFF
    assert policy.poll(1.70, ALIVE) == Decision()  # TERM sent, grace running, not due while it lives
    assert policy.poll(1.76, ALIVE).action is KILL
    assert policy.poll(1.80, ALIVE) == Decision()  # killed once, then waited for
    assert policy.poll(1.85, -9).action is SPAWN  # gone, and the backoff (0.1 s) is long over
    assert policy.restarts == 1


def test_a_hung_child_that_exits_on_sigterm_is_not_killed() -> None:
    policy = running(0.0, interval=0.5, hang_grace=0.3)
    assert policy.poll(2.0, ALIVE).action is TERMINATE
    assert policy.poll(2.05, ALIVE) == Decision()
    assert policy.poll(2.06, -15) == Decision()  # gone; backoff until 2.1
    assert policy.poll(2.1, -15).action is SPAWN


def test_a_hung_childs_beats_read_late_do_not_revive_it() -> None:
    policy = running(0.0, interval=0.5)
    assert policy.poll(2.0, ALIVE).action is TERMINATE
    policy.beat(2.01)
    assert policy.state is BACKOFF and policy.poll(2.02, ALIVE) == Decision()


def test_a_child_that_never_beats_is_hung_after_the_startup_timeout() -> None:
    policy = RestartPolicy(startup_timeout=10.0)
    policy.spawned(0.0)
    assert policy.poll(10.0, ALIVE) == Decision()
    assert policy.poll(10.1, ALIVE).failure == "hung: no first heartbeat within 10s of start"


def test_a_starting_child_that_uses_cpu_is_slow_not_hung_until_it_stops_using_it() -> None:
    policy = RestartPolicy(startup_timeout=10.0)
    policy.spawned(0.0)
    now, cpu = 0.0, 0.0
    while now < 60.0:  # importing on a crowded host: a little CPU each look, no beat for a minute
        now, cpu = now + 0.5, cpu + 0.01
        assert policy.poll(now, ALIVE, cpu=cpu) == Decision(), now
    assert policy.poll(70.0, ALIVE, cpu=cpu) == Decision()  # the same CPU as at 60 s: 10 s without progress
    decision = policy.poll(70.1, ALIVE, cpu=cpu)
    assert decision.action is TERMINATE
    assert decision.failure == "hung: no first heartbeat 70s after start, and no CPU used in the last 10s"


def test_a_starting_child_computing_without_a_beat_is_hung_once_the_progress_allowance_is_over() -> None:
    policy = RestartPolicy(startup_timeout=10.0)
    policy.spawned(0.0)
    now, cpu, decision = 0.0, 0.0, Decision()
    while decision == Decision():
        now, cpu = now + 0.5, cpu + 0.5  # a loop before its first beat: all the CPU it can get, for ever
        decision = policy.poll(now, ALIVE, cpu=cpu)
    assert decision.action is TERMINATE
    assert MAX_STARTUP + 10.0 - 0.5 < now <= MAX_STARTUP + 10.0 + 0.5  # its last progress counted, plus 10 s


def test_cpu_counts_only_while_a_child_starts() -> None:
    policy = running(0.0, interval=0.5, liveness=3)
    assert policy.poll(1.0, ALIVE, cpu=5.0) == Decision()  # a running child that computes still has to beat
    assert policy.poll(1.5, ALIVE, cpu=6.0).action is TERMINATE
    respawned = RestartPolicy(startup_timeout=10.0)
    respawned.spawned(0.0)
    respawned.poll(5.0, ALIVE, cpu=1.0)
    respawned.spawned(20.0)  # a new process: its CPU counts from zero
    assert respawned.cpu_seen == 0.0 and respawned.progress_at is None
    assert respawned.poll(25.0, ALIVE, cpu=0.5) == Decision()
    assert respawned.poll(35.1, ALIVE, cpu=0.5).failure == \
        "hung: no first heartbeat 15s after start, and no CPU used in the last 10s"


def test_a_crash_loop_ends_fatal_and_fatal_is_sticky() -> None:
    policy = running(0.0, max_failures=5, window=30.0)
    now, failures = 0.0, []
    while policy.state is not FATAL:
        now += 0.01
        decision = policy.poll(now, 3)
        if decision.failure:
            failures.append(decision.failure)
        if decision.action is SPAWN:
            policy.spawned(now)
    assert len(failures) == 6 and policy.restarts == 5
    assert all(policy.poll(now + t, 3) == Decision() for t in (1.0, 60.0, 1e6))  # never spawned again


# --- stopping: begun at once, finished by a later poll -----------------------------------------


def test_a_stop_terminates_and_ends_off_when_the_child_exits_within_the_grace() -> None:
    policy = running(0.0)
    assert policy.stop_requested(3.0, grace=8.0) == Decision(TERMINATE)
    assert policy.state is STOPPING
    assert policy.poll(4.0, ALIVE) == Decision()
    assert policy.poll(4.5, 0) == Decision(stopped=Ending.EXITED)
    assert policy.state is OFF
    assert policy.poll(1e6, 0) == Decision()  # OFF stays off: no respawn


def test_a_child_that_ignores_sigterm_is_killed_at_the_grace() -> None:
    policy = running(0.0)
    policy.stop_requested(3.0, grace=8.0)
    assert all(policy.poll(3.0 + t, ALIVE) == Decision() for t in (0.5, 4.0, 7.99))
    assert policy.poll(11.0, ALIVE) == Decision(KILL)
    assert policy.poll(11.1, ALIVE) == Decision()
    assert policy.poll(11.2, -9) == Decision(stopped=Ending.KILLED) and policy.state is OFF


def test_a_stopping_child_is_never_hung_and_its_beats_change_nothing() -> None:
    policy = running(0.0, interval=0.5)
    policy.stop_requested(0.1, grace=8.0)
    policy.beat(0.2)
    assert policy.state is STOPPING
    assert not policy.hung(7.0) and policy.poll(7.0, ALIVE) == Decision()


@pytest.mark.parametrize("state", [OFF, BACKOFF, FATAL])
def test_a_stop_without_a_live_process_is_off_at_once(state: ServiceState) -> None:
    policy = RestartPolicy(state=state)
    policy.failures.extend([1.0, 2.0])
    assert policy.stop_requested(5.0, grace=8.0) == Decision(stopped=Ending.ALREADY_EXITED)
    assert policy.state is OFF and not policy.failures
    assert policy.poll(1e6, 1) == Decision()


def test_a_stop_asked_twice_keeps_the_first_deadline() -> None:
    policy = running(0.0)
    policy.stop_requested(1.0, grace=8.0)
    assert policy.stop_requested(5.0, grace=8.0) == Decision()
    assert policy.poll(9.0, ALIVE) == Decision(KILL)


def test_a_stop_during_a_hang_keeps_the_sooner_kill_and_ends_off_not_respawned() -> None:
    policy = running(0.0, interval=0.5, hang_grace=0.3)
    assert policy.poll(2.0, ALIVE).action is TERMINATE
    assert policy.stop_requested(2.1, grace=8.0) == Decision()  # already signalled
    assert policy.state is STOPPING
    assert policy.poll(2.3, ALIVE) == Decision(KILL)
    assert policy.poll(2.4, -9) == Decision(stopped=Ending.KILLED) and policy.state is OFF
    assert policy.poll(100.0, -9) == Decision()


def test_a_stopping_service_cannot_be_started_until_off() -> None:
    policy = running(0.0)
    policy.stop_requested(1.0, grace=8.0)
    assert not policy.start_requested()
    policy.poll(1.5, 0)
    assert policy.start_requested()
