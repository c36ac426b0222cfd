"""The restart policy, as a pure function: failure histories and times given, no processes.

The numbers are those of the defaults (``restart_window: 10m``, ``backoff_base: 500ms``,
``backoff_max: 1m``) scaled to be easy to read: a window of 100 s, a base of 1 s and a
cap of 8 s.  Times are plain floats, as :func:`time.monotonic` gives them.
"""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest

from runnerkit.config import MasterSettings
from runnerkit.exits import EXIT_RESTART
from runnerkit.master import Action, Decision, RestartPolicy
from runnerkit.master.policy import describe_exit

POLICY = RestartPolicy(restart_window=100.0, backoff_base=1.0, backoff_max=8.0)

#: max_restarts, when a test does not mean to reach it.
PLENTY = 1000


def fail(
    failures: tuple[float, ...], now: float, max_restarts: int = PLENTY, status: int = 1
) -> Decision:
    return POLICY.decide(failures, max_restarts, status, now=now)


def fail_repeatedly(times: list[float], max_restarts: int = PLENTY) -> list[Decision]:
    """Feed a failure at each of *times*, each decision's history into the next."""
    decisions = []
    failures: tuple[float, ...] = ()
    for now in times:
        decision = fail(failures, now, max_restarts)
        decisions.append(decision)
        failures = decision.failures
    return decisions


def test_the_policy_is_built_from_the_master_section() -> None:
    settings = MasterSettings(
        restart_window=timedelta(minutes=10),
        backoff_base=timedelta(milliseconds=500),
        backoff_max=timedelta(minutes=1),
        stop_timeout=timedelta(seconds=30),
        stuck_after=timedelta(minutes=10),
        strict_modes=True,
    )
    assert RestartPolicy.from_settings(settings) == RestartPolicy(600.0, 0.5, 60.0)


# Exits that are no failures.


def test_status_0_stopped_on_purpose_and_stays_down() -> None:
    decision = POLICY.decide((5.0,), 10, 0, now=50.0)
    assert decision == Decision(
        Action.STOPPED, (5.0,), start_at=None, delay=None, reason="stopped"
    )
    assert decision.stays_down


def test_status_75_restarts_at_once_at_no_cost() -> None:
    assert EXIT_RESTART == 75
    decision = POLICY.decide((40.0, 45.0), 2, 75, now=50.0)
    assert decision == Decision(Action.RESTART, (40.0, 45.0), start_at=50.0, delay=0.0)
    assert not decision.stays_down


@pytest.mark.parametrize("status", [0, 1, 75, -signal.SIGTERM, -signal.SIGKILL])
def test_a_requested_restart_is_free_whatever_the_status(status: int) -> None:
    decision = POLICY.decide((45.0,), 1, status, restart_requested=True, now=50.0)
    assert decision == Decision(Action.RESTART, (45.0,), start_at=50.0, delay=0.0)


def test_free_restarts_never_give_up() -> None:
    failures = (10.0, 20.0, 30.0)
    for now in range(31, 1000):
        decision = POLICY.decide(failures, 0, EXIT_RESTART, now=float(now))
        assert decision.action is Action.RESTART
        assert decision.failures == failures


# Failures: the backoff.


def test_the_first_failure_waits_backoff_base() -> None:
    decision = fail((), now=50.0)
    assert decision == Decision(Action.BACKOFF, (50.0,), start_at=51.0, delay=1.0)
    assert decision.reason == ""


def test_each_failure_inside_the_window_doubles_the_pause_up_to_backoff_max() -> None:
    decisions = fail_repeatedly([10.0, 11.0, 13.0, 17.0, 25.0, 33.0, 41.0])
    assert [decision.delay for decision in decisions] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    starts = [decision.start_at for decision in decisions]
    assert starts == [11.0, 13.0, 17.0, 25.0, 33.0, 41.0, 49.0]
    assert all(decision.action is Action.BACKOFF for decision in decisions)
    assert decisions[-1].failures == (10.0, 11.0, 13.0, 17.0, 25.0, 33.0, 41.0)


@pytest.mark.parametrize(
    ("status", "how"), [(1, "status 1"), (2, "status 2"), (-9, "signal 9"), (-15, "signal 15")]
)
def test_error_statuses_and_deaths_by_a_signal_are_failures(status: int, how: str) -> None:
    decision = fail((45.0,), now=50.0, status=status)
    assert decision == Decision(Action.BACKOFF, (45.0, 50.0), start_at=52.0, delay=2.0)
    assert describe_exit(status) == how


def test_the_backoff_survives_a_huge_number_of_failures() -> None:
    # 2 ** 2000 is an int that no float can hold; the pause is still backoff_max.
    failures = tuple(time / 100 for time in range(2000))
    decision = POLICY.decide(failures, 10**6, 1, now=20.0)
    assert decision.delay == 8.0
    assert len(decision.failures) == 2001
    assert RestartPolicy(100.0, 0.0, 8.0).backoff(10**9) == 0.0


# Failures: the window forgives.


def test_failures_older_than_the_window_are_forgotten() -> None:
    decision = fail((10.0, 20.0, 30.0), now=125.0)
    # 125 - 100 = 25: the failures at 10 and 20 are forgotten, the one at 30 counts.
    assert decision.failures == (30.0, 125.0)
    assert decision.delay == 2.0


def test_a_failure_exactly_one_window_old_is_forgotten() -> None:
    assert fail((25.0,), now=125.0).failures == (125.0,)
    assert fail((25.5,), now=125.0).failures == (25.5, 125.0)


def test_a_runner_that_fails_now_and_then_is_always_restarted() -> None:
    decisions = fail_repeatedly([float(time) for time in range(0, 10_000, 101)], max_restarts=0)
    assert {decision.action for decision in decisions} == {Action.GIVE_UP}
    decisions = fail_repeatedly([float(time) for time in range(0, 10_000, 101)], max_restarts=1)
    assert {decision.action for decision in decisions} == {Action.BACKOFF}
    assert {decision.delay for decision in decisions} == {1.0}


def test_after_a_quiet_window_the_backoff_starts_again_from_the_base() -> None:
    decisions = fail_repeatedly([0.0, 1.0, 3.0, 7.0, 200.0])
    assert [decision.delay for decision in decisions] == [1.0, 2.0, 4.0, 8.0, 1.0]


# Failures: giving up.


def test_more_than_max_restarts_failures_inside_the_window_give_up() -> None:
    decisions = fail_repeatedly([0.0, 1.0, 3.0, 7.0, 15.0], max_restarts=4)
    assert [decision.action for decision in decisions] == [Action.BACKOFF] * 4 + [Action.GIVE_UP]
    given_up = decisions[-1]
    assert given_up.stays_down
    assert (given_up.start_at, given_up.delay) == (None, None)
    assert given_up.failures == (0.0, 1.0, 3.0, 7.0, 15.0)
    assert given_up.reason == "failed 5 times within the restart window"


def test_max_restarts_0_gives_up_at_the_first_failure() -> None:
    decision = fail((), now=50.0, max_restarts=0)
    assert decision == Decision(
        Action.GIVE_UP,
        (50.0,),
        start_at=None,
        delay=None,
        reason="failed 1 times within the restart window",
    )


def test_the_same_failures_spread_over_more_than_the_window_do_not_give_up() -> None:
    decisions = fail_repeatedly([0.0, 40.0, 80.0, 120.0, 160.0, 200.0], max_restarts=3)
    assert [decision.action for decision in decisions] == [Action.BACKOFF] * 6
    assert [len(decision.failures) for decision in decisions] == [1, 2, 3, 3, 3, 3]


def test_pauses_do_not_age_failures_so_a_crash_loop_is_given_up_on() -> None:
    # A window shorter than the backoff: on the wall clock every failure would be older
    # than the window by the time of the next, and the loop would never be given up on.
    policy = RestartPolicy(restart_window=1.0, backoff_base=0.5, backoff_max=60.0)
    failures: tuple[float, ...] = ()
    now = running = 0.0
    for attempt in range(1, 20):  # noqa: B007 - the count is checked after the loop
        now += 0.05  # the process lives 50 ms ...
        running += 0.05
        decision = policy.decide(failures, 5, 1, now=now, running=running)
        if decision.action is Action.GIVE_UP:
            break
        assert decision.start_at is not None
        now = decision.start_at  # ... then waits out its backoff, which ages nothing
        failures = decision.failures
    assert decision.action is Action.GIVE_UP
    assert attempt == 6


def test_failures_are_forgotten_after_a_window_of_running_time() -> None:
    policy = RestartPolicy(restart_window=10.0, backoff_base=0.5, backoff_max=60.0)
    decision = policy.decide((1.0, 2.0), 2, 1, now=5000.0, running=11.5)
    # 1.0 is older than 10 s of running time; 2.0 is not.
    assert decision.failures == (2.0, 11.5)
    assert decision.action is Action.BACKOFF
    assert decision.start_at == 5000.0 + 1.0
