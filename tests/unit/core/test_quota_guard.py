"""The quota guard without Ray: run accounts refuse the call over a limit; state survives."""

from __future__ import annotations

from pipelines.core.rate_limit import (
    STOP,
    AsyncQuotaSettings,
    QuotaGuard,
    RateBudgetSettings,
    quota_scope,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _guard(clock: Clock) -> QuotaGuard:
    return QuotaGuard(RateBudgetSettings(600, 1e9), AsyncQuotaSettings(60, 2), clock, clock)


def test_max_calls_refuses_the_call_over_the_limit_and_every_later_one() -> None:
    guard = _guard(Clock())
    guard.open_run("r", 3, None)
    assert [guard.reserve(1, "r") != STOP for _ in range(3)] == [True] * 3
    assert guard.reserve(1, "r") == STOP
    assert guard.reserve_start("r") == STOP
    assert guard.runs["r"].calls == 3
    assert "limits.max_calls=3" in (guard.stop_reason("r") or "")
    # Another run on the same guard is not affected.
    guard.open_run("other", None, None)
    assert guard.reserve(1, "other") != STOP


def test_a_batch_is_reserved_as_its_calls_one_by_one_up_to_the_limit() -> None:
    one, many = _guard(Clock()), _guard(Clock())
    for guard in (one, many):
        guard.open_run("r", 5, None)
    singles = [one.reserve(1, "r", 0.01) for _ in range(7)]
    batch = many.reserve_many([(1, 0.01)] * 7, "r")
    # Same spacing (600/min: a tenth of a second apart beyond the burst), same refusals.
    assert batch == singles
    assert batch[5:] == [STOP, STOP]
    assert many.runs["r"].calls == one.runs["r"].calls == 5
    assert many.sync.granted == one.sync.granted


def test_max_usd_counts_estimates_corrections_and_refunds() -> None:
    guard = _guard(Clock())
    guard.open_run("r", None, 1.0)
    assert guard.reserve(1, "r", 0.4) != STOP
    guard.report(0, 1, run_id="r", usd=-0.4)  # a throttled call is not billed
    assert guard.reserve(1, "r", 0.4) != STOP
    assert guard.reserve(1, "r", 0.4) != STOP
    assert guard.reserve(1, "r", 0.4) == STOP  # 0.8 + 0.4 > 1.0
    assert "limits.max_usd=1" in (guard.stop_reason("r") or "")


def test_state_restores_learned_rate_spending_and_job_slots() -> None:
    clock = Clock()
    guard = _guard(clock)
    guard.open_run("r", 10, None)
    for _ in range(20):
        clock.t += 0.2
        guard.reserve(1, "r" if _ < 4 else None)
        guard.report(1, 0)
    guard.report(0, 1)
    assert guard.sync.fraction < 1.0
    assert guard.acquire_job("job-1", 60) and guard.acquire_job("job-2", 60)
    assert not guard.acquire_job("job-3", 60)  # async_max_concurrent_jobs=2
    reborn = _guard(clock)
    reborn.restore(guard.state())
    assert reborn.sync.fraction == guard.sync.fraction
    assert reborn.runs["r"].calls == 4
    assert reborn.restarts == 1
    assert not reborn.acquire_job("job-3", 60)
    reborn.release_job("job-1")
    assert reborn.acquire_job("job-3", 60)


def test_attach_keeps_what_was_learned_unless_the_quota_differs() -> None:
    clock = Clock()
    guard = _guard(clock)
    guard.sync.fraction = 0.5
    assert not guard.attach(RateBudgetSettings(600, 1e9), AsyncQuotaSettings(60, 2))
    assert guard.sync.fraction == 0.5
    assert guard.attach(RateBudgetSettings(1200, 1e9), AsyncQuotaSettings(60, 2))
    assert guard.sync.fraction == 1.0


def test_scope_is_account_region_and_model_not_collection() -> None:
    a = quota_scope("http://127.0.0.1:8765/", "us-east-1", "m")
    assert a == quota_scope("http://127.0.0.1:8765", "us-east-1", "m")
    assert a != quota_scope("http://127.0.0.1:8765", "us-west-2", "m")
    assert a != quota_scope("http://127.0.0.1:8765", "us-east-1", "other")
    assert "account=123" in quota_scope(None, "us-east-1", "m", account="123")
