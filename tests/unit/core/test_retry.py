"""The retry helper with a fake clock: attempts, deadline, jitter bounds, classification, hooks."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from pipelines.core.retry import GIVE_UP, Decision, Failure, RetryPolicy, retry_call


class FakeClock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky(Exception):
    pass


class Broken(Exception):
    pass


class failing:
    """A function that raises ``times`` times, then returns "ok"; counts its calls."""

    def __init__(self, times: int, error: Callable[[], Exception] = Flaky) -> None:
        self.times = times
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error()
        return "ok"


def flaky_only(exc: BaseException) -> bool:
    return isinstance(exc, Flaky)


def run(fn: Callable[[], str], policy: RetryPolicy, clock: FakeClock, **hooks: Any) -> str:
    return retry_call(
        fn, flaky_only, policy, clock=clock, sleep=clock.sleep, rng=random.Random(7), **hooks
    )


def test_returns_after_transient_failures_and_sleeps_between() -> None:
    clock = FakeClock()
    fn = failing(2)
    assert run(fn, RetryPolicy(5, base_s=1.0, cap_s=10.0), clock) == "ok"
    assert fn.calls == 3
    assert len(clock.sleeps) == 2


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock = FakeClock()
    fn = failing(10)
    with pytest.raises(Flaky):
        run(fn, RetryPolicy(3, base_s=1.0), clock)
    assert fn.calls == 3
    assert len(clock.sleeps) == 2  # no sleep after the last attempt


def test_non_retryable_is_raised_at_once() -> None:
    clock = FakeClock()
    fn = failing(1, Broken)
    with pytest.raises(Broken):
        run(fn, RetryPolicy(5), clock)
    assert fn.calls == 1
    assert clock.sleeps == []


def test_full_jitter_bounds_first_retry_waits_at_most_base() -> None:
    policy = RetryPolicy(None, deadline_s=1e9, base_s=0.5, cap_s=4.0)
    rng = random.Random(1)
    for retry in range(1, 9):
        ceiling = min(4.0, 0.5 * 2 ** (retry - 1))
        draws = [policy.backoff(retry, rng) for _ in range(500)]
        assert all(0.0 <= d <= ceiling for d in draws)
        # Full jitter: the draws spread over the whole range, not just near the ceiling.
        assert min(draws) < 0.1 * ceiling and max(draws) > 0.9 * ceiling
    with pytest.raises(ValueError):
        policy.backoff(0)


def test_sleeps_stay_within_the_jitter_bounds_of_each_retry() -> None:
    clock = FakeClock()
    with pytest.raises(Flaky):
        run(failing(50), RetryPolicy(8, base_s=1.0, cap_s=3.0), clock)
    assert len(clock.sleeps) == 7
    for n, slept in enumerate(clock.sleeps, start=1):
        assert 0.0 <= slept <= min(3.0, 2.0 ** (n - 1))


def test_deadline_cuts_the_last_wait_and_stops() -> None:
    clock = FakeClock()
    fn = failing(1000)
    with pytest.raises(Flaky):
        run(fn, RetryPolicy(None, deadline_s=10.0, base_s=2.0, cap_s=2.0), clock)
    # Retried until the deadline and not beyond: one last attempt exactly at it.
    assert clock.now == pytest.approx(10.0)
    assert fn.calls == len(clock.sleeps) + 1


def test_classifier_minimum_delay_is_respected() -> None:
    clock = FakeClock()

    def slow_down(exc: BaseException) -> Decision:
        return Decision(True, min_delay_s=5.0) if isinstance(exc, Flaky) else GIVE_UP

    retry_call(failing(2), slow_down, RetryPolicy(5, base_s=0.1), clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [5.0, 5.0]


def test_hooks_see_every_attempt_and_failure() -> None:
    clock = FakeClock()
    attempts: list[int] = []
    failures: list[Failure] = []
    with pytest.raises(Flaky):
        run(
            failing(10),
            RetryPolicy(3, base_s=1.0),
            clock,
            before_attempt=attempts.append,
            on_failure=failures.append,
        )
    assert attempts == [1, 2, 3]
    assert [f.attempt for f in failures] == [1, 2, 3]
    assert [f.retry for f in failures] == [True, True, False]
    assert [f.exhausted for f in failures] == [False, False, True]
    assert [f.delay_s for f in failures[:2]] == clock.sleeps
    assert failures[-1].delay_s == 0.0

    failures.clear()
    with pytest.raises(Broken):
        run(failing(1, Broken), RetryPolicy(3), clock, on_failure=failures.append)
    assert [(f.retryable, f.retry, f.exhausted) for f in failures] == [(False, False, False)]


def test_a_hook_may_stop_the_call() -> None:
    clock = FakeClock()

    def stop(failure: Failure) -> None:
        if failure.exhausted:
            raise RuntimeError("gave up") from failure.error

    with pytest.raises(RuntimeError, match="gave up"):
        run(failing(10), RetryPolicy(2), clock, on_failure=stop)


def test_policy_needs_a_limit() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(None)
    with pytest.raises(ValueError):
        RetryPolicy(0)
