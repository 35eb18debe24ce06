"""The adaptive rate budget, driven by a fake clock and a simulated quota."""

from __future__ import annotations

import pytest

from pipelines.core.rate_limit import AdaptiveRateBudget, RateBudgetSettings


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def simulate(
    configured_rpm: float, real_rpm: float, seconds: float, latency: float = 0.2
) -> tuple[list[tuple[float, bool]], AdaptiveRateBudget]:
    """One greedy caller with unlimited concurrency against a token bucket of ``real_rpm``.

    Returns (send time, accepted?) for every request and the budget.
    """
    clock = FakeClock()
    budget = AdaptiveRateBudget(
        RateBudgetSettings(requests_per_minute=configured_rpm, tokens_per_minute=1e9),
        clock=clock,
    )
    real_rps = real_rpm / 60.0
    bucket_depth = real_rps * 2.0  # the emulator's default burst: 2 s of quota
    tokens = bucket_depth
    last = clock.t
    start = clock.t
    events: list[tuple[float, bool]] = []
    pending: list[tuple[float, bool]] = []  # (report time, accepted)
    next_send = clock.t
    while clock.t - start < seconds:
        clock.t = next_send
        # Deliver feedback that has arrived by now.
        due = [p for p in pending if p[0] <= clock.t]
        pending = [p for p in pending if p[0] > clock.t]
        for _, ok in due:
            budget.report(successes=1 if ok else 0, throttles=0 if ok else 1)
        delay = budget.reserve(1)
        clock.t += delay
        tokens = min(bucket_depth, tokens + (clock.t - last) * real_rps)
        last = clock.t
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
        events.append((clock.t - start, ok))
        pending.append((clock.t + latency, ok))
        next_send = clock.t
    return events, budget


def accepted_rate(events: list[tuple[float, bool]], t0: float, t1: float) -> float:
    n = sum(1 for t, ok in events if ok and t0 <= t < t1)
    return n / (t1 - t0) * 60.0


def test_paces_at_the_configured_quota_without_throttles() -> None:
    events, _ = simulate(configured_rpm=600, real_rpm=600, seconds=60)
    throttled = sum(1 for _, ok in events if not ok)
    assert throttled / len(events) <= 0.01
    assert accepted_rate(events, 5, 60) >= 0.95 * 600


def test_settles_near_the_real_quota_when_configured_twice_too_high() -> None:
    events, budget = simulate(configured_rpm=1200, real_rpm=600, seconds=90)
    assert budget.decreases >= 1
    # After 30 s it must sustain at least 0.85 of the real quota ...
    assert accepted_rate(events, 30, 90) >= 0.85 * 600
    # ... and stop hammering the service: few throttles once settled.
    late = [ok for t, ok in events if t >= 30]
    assert sum(1 for ok in late if not ok) / len(late) < 0.05


def test_probes_less_often_once_the_limit_is_known() -> None:
    events, budget = simulate(configured_rpm=1200, real_rpm=600, seconds=600)
    assert accepted_rate(events, 30, 600) >= 0.95 * 600
    # Every throttle at the same accepted rate doubles the time to the next probe: a handful of
    # decreases in ten minutes, not one every half minute.
    assert budget.decreases <= 10
    assert budget.snapshot()["probe_slowdown"] > RateBudgetSettings(1, 1).probe_slowdown
    late = [ok for t, ok in events if t >= 120]
    assert sum(1 for ok in late if not ok) / len(late) < 0.005


def _throttle_at(budget: AdaptiveRateBudget, clock: FakeClock, rps: float) -> None:
    """Eight seconds of calls accepted at ``rps``, then a throttle."""
    for _ in range(int(8 * rps)):
        clock.t += 1.0 / rps
        budget.report(successes=1)
    budget.report(throttles=1)


def test_probe_slowdown_resets_when_the_service_accepts_more() -> None:
    clock = FakeClock()
    settings = RateBudgetSettings(requests_per_minute=1200, tokens_per_minute=1e9)
    budget = AdaptiveRateBudget(settings, clock=clock)
    _throttle_at(budget, clock, 10.0)
    _throttle_at(budget, clock, 10.0)
    _throttle_at(budget, clock, 10.0)
    assert budget.snapshot()["probe_slowdown"] == 4 * settings.probe_slowdown
    _throttle_at(budget, clock, 14.0)  # the quota grew: probe at the normal pace again
    assert budget.snapshot()["probe_slowdown"] == settings.probe_slowdown


def test_recovers_towards_the_ceiling_after_a_transient_throttle() -> None:
    clock = FakeClock()
    budget = AdaptiveRateBudget(RateBudgetSettings(600, 1e9), clock=clock)
    budget.report(throttles=1)
    low = budget.fraction
    assert low < 1.0
    clock.t += 120
    budget.reserve(1)
    assert budget.fraction == pytest.approx(1.0)


def test_tokens_per_minute_paces_large_requests() -> None:
    clock = FakeClock()
    budget = AdaptiveRateBudget(
        RateBudgetSettings(requests_per_minute=6000, tokens_per_minute=60_000, burst_seconds=0),
        clock=clock,
    )
    # 1,000 tokens/s: each 500-token request costs half a second.
    delays = [budget.reserve(500) for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


def test_rejects_non_positive_quota() -> None:
    with pytest.raises(ValueError):
        AdaptiveRateBudget(RateBudgetSettings(0, 1))
