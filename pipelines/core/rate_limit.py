"""One cluster-wide rate budget for Bedrock calls, adaptive to throttling.

Every embed actor on every node asks the same named Ray actor for permission before each call.
The budget paces two resources at once, requests/min and tokens/min, with a virtual-clock
scheduler (GCRA): a reservation returns how long the caller must wait, so the actor never blocks
and callers sleep locally.

The configured quota is a ceiling, not a promise. On ``ThrottlingException`` the allowed rate drops
to a little under the rate the service actually accepted over the last few seconds (or by a
multiplicative factor when there is too little history), at most once per cooldown; without
throttles it climbs back additively towards the ceiling, quickly up to the rate the service last
accepted and slowly above it (probing for more quota without charging back into the limit).
Measuring the accepted rate, rather than halving blindly, is what lets the pipeline settle close to
the real quota when the configured one is wrong, instead of oscillating around 75% of it as plain
AIMD does.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class RateBudgetSettings:
    """Tuning of the adaptive budget (defaults suit Bedrock's per-minute quotas)."""

    requests_per_minute: float
    tokens_per_minute: float
    # Burst the scheduler allows ahead of the steady pace, in seconds of quota.
    burst_seconds: float = 0.5
    # On throttle: new rate = backoff_margin x accepted rate over the window.
    backoff_margin: float = 0.97
    # When history is too thin to measure: new rate = rate x decrease_factor.
    decrease_factor: float = 0.7
    # After a decrease, no other decrease for this long (throttles of in-flight calls echo).
    cooldown_s: float = 2.0
    # Additive increase: fraction of the ceiling regained per second without throttles ...
    increase_per_s: float = 0.01
    # ... slowed by this factor above the rate the service last accepted (probing, not charging
    # back into the wall: without it a too-high configured quota throttles every few seconds).
    probe_slowdown: float = 20.0
    # Each throttle met while probing at about the same accepted rate doubles the slowdown, up
    # to this (the service keeps saying where its limit is: ask less often). A throttle at a
    # clearly higher accepted rate (the quota grew) resets it.
    max_probe_slowdown: float = 160.0
    # Accepted-rate window (seconds).
    window_s: float = 8.0
    # Never go below this fraction of the ceiling.
    min_fraction: float = 0.02


class AdaptiveRateBudget:
    """The budget's logic, free of Ray so that it can be tested with a fake clock."""

    def __init__(
        self, settings: RateBudgetSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if settings.requests_per_minute <= 0 or settings.tokens_per_minute <= 0:
            raise ValueError("quotas must be > 0")
        self.s = settings
        self._clock = clock
        self.ceiling_rps = settings.requests_per_minute / 60.0
        self.ceiling_tps = settings.tokens_per_minute / 60.0
        # Current allowed fraction of the ceiling (applies to both resources).
        self.fraction = 1.0
        now = clock()
        self._tat_req = now  # theoretical arrival times (GCRA)
        self._tat_tok = now
        self._last_adjust = now
        self._last_decrease = -1e18
        self._accepted: collections.deque[float] = collections.deque()
        # Fraction of the ceiling the service accepted when it last throttled (None: never).
        self._known_good: float | None = None
        self._probe_slowdown = settings.probe_slowdown
        self.granted = 0
        self.throttles = 0
        self.successes = 0
        self.decreases = 0

    # -- pacing ---------------------------------------------------------------------------------
    def _rates(self) -> tuple[float, float]:
        return self.ceiling_rps * self.fraction, self.ceiling_tps * self.fraction

    def reserve(self, tokens: int = 1) -> float:
        """Reserve one request of ``tokens`` tokens; returns the seconds to wait before sending."""
        now = self._clock()
        self._recover(now)
        rps, tps = self._rates()
        tokens = max(1, int(tokens))
        burst = self.s.burst_seconds
        # A request may start at max(now, tat - burst); it then pushes tat forward by its cost.
        start_req = max(now, self._tat_req - burst)
        start_tok = max(now, self._tat_tok - burst)
        start = max(start_req, start_tok)
        self._tat_req = max(self._tat_req, start) + 1.0 / rps
        self._tat_tok = max(self._tat_tok, start) + tokens / tps
        self.granted += 1
        return max(0.0, start - now)

    def refund_tokens(self, estimated: int, actual: int) -> None:
        """Correct the token clock when the service reports the real count."""
        _, tps = self._rates()
        self._tat_tok += (int(actual) - int(estimated)) / tps

    # -- feedback -------------------------------------------------------------------------------
    def report(self, successes: int = 0, throttles: int = 0) -> None:
        """Feed back outcomes: accepted calls and ThrottlingExceptions."""
        now = self._clock()
        for _ in range(successes):
            self._accepted.append(now)
        self.successes += successes
        self._trim(now)
        if throttles <= 0:
            return
        self.throttles += throttles
        if now - self._last_decrease < self.s.cooldown_s:
            return
        self._last_decrease = now
        self.decreases += 1
        window = min(self.s.window_s, max(1e-6, now - self._first_accept_time(now)))
        accepted_rps = len(self._accepted) / window if window >= 2.0 else 0.0
        current_rps, _ = self._rates()
        if accepted_rps > 0 and len(self._accepted) >= 8:
            target = min(current_rps * 0.95, accepted_rps * self.s.backoff_margin)
            accepted = accepted_rps / self.ceiling_rps
            if self._known_good is not None and accepted <= self._known_good * 1.03:
                self._probe_slowdown = min(self.s.max_probe_slowdown, self._probe_slowdown * 2)
            else:
                self._probe_slowdown = self.s.probe_slowdown
            self._known_good = accepted
        else:
            target = current_rps * self.s.decrease_factor
        self.fraction = max(self.s.min_fraction, min(1.0, target / self.ceiling_rps))
        # Forget reservations made at the old pace beyond one burst: resume at the new pace now.
        self._tat_req = min(self._tat_req, now + 1.0 / max(target, 1e-9))
        self._tat_tok = min(self._tat_tok, now + self.s.burst_seconds)
        self._last_adjust = now

    def _first_accept_time(self, now: float) -> float:
        return self._accepted[0] if self._accepted else now

    def _trim(self, now: float) -> None:
        horizon = now - self.s.window_s
        while self._accepted and self._accepted[0] < horizon:
            self._accepted.popleft()

    def _recover(self, now: float) -> None:
        dt = now - self._last_adjust
        self._last_adjust = now
        if dt <= 0 or now - self._last_decrease < self.s.cooldown_s:
            return
        step = self.s.increase_per_s * dt
        if (
            self._known_good is not None
            and self.fraction >= self._known_good * self.s.backoff_margin
        ):
            step /= self._probe_slowdown
        self.fraction = min(1.0, self.fraction + step)

    # -- what survives a restart --------------------------------------------------------------
    def learned(self) -> dict[str, Any]:
        """What the budget has learned about the real quota (restored after a restart)."""
        return {
            "fraction": self.fraction,
            "known_good": self._known_good,
            "probe_slowdown": self._probe_slowdown,
            "granted": self.granted,
            "successes": self.successes,
            "throttles": self.throttles,
            "decreases": self.decreases,
        }

    def restore(self, learned: dict[str, Any]) -> None:
        """Continue from :meth:`learned` of an earlier instance (same settings)."""
        self.fraction = max(self.s.min_fraction, min(1.0, float(learned["fraction"])))
        known = learned.get("known_good")
        self._known_good = None if known is None else float(known)
        self._probe_slowdown = float(learned.get("probe_slowdown", self.s.probe_slowdown))
        for name in ("granted", "successes", "throttles", "decreases"):
            setattr(self, name, int(learned.get(name, 0)))
        # A restart after a decrease must not climb at once: hold the cooldown from now.
        self._last_decrease = self._clock()
        self._last_adjust = self._clock()

    def snapshot(self) -> dict[str, Any]:
        rps, tps = self._rates()
        return {
            "requests_per_minute": rps * 60.0,
            "tokens_per_minute": tps * 60.0,
            "fraction": self.fraction,
            "granted": self.granted,
            "successes": self.successes,
            "throttles": self.throttles,
            "decreases": self.decreases,
            "probe_slowdown": self._probe_slowdown,
        }


# -- the quota guard: one per account, region and model, shared by every job on the cluster --------

BUDGET_ACTOR_NAME = "nova-mme-rate-budget"
BUDGET_NAMESPACE = "nova-embed-pipelines"
# What reserve() returns when the run's spending limit refuses the call.
STOP = -1.0
# A guard nobody asked for this long forgets what it learned on the next attach: the account's
# quota may have changed since (seconds).
IDLE_RESET_S = 600.0
# Unused tokens per minute of the async starts' budget (starts are counted, not weighed).
_UNWEIGHED = 1e12


@dataclass
class AsyncQuotaSettings:
    """Service segmentation's own quotas: StartAsyncInvoke requests/min and jobs in progress."""

    requests_per_minute: float = 60.0
    max_concurrent_jobs: int = 20


@dataclass
class RunAccount:
    """What one run may spend (None: no limit) and has spent, as the guard counted it."""

    max_calls: int | None = None
    max_usd: float | None = None
    calls: int = 0
    usd: float = 0.0
    throttles: int = 0
    stopped: str | None = None


class QuotaGuard:
    """The shared guard's logic, free of Ray: pacing of synchronous calls and of async starts,
    async job slots, and each run's spending account.

    Every call a run makes is charged to its account *before* it goes out; once the next one
    would pass ``max_calls`` or ``max_usd`` the guard refuses it (and every later one of that
    run) with :data:`STOP`, so no call beyond the limit is made.
    """

    def __init__(
        self,
        settings: RateBudgetSettings,
        async_settings: AsyncQuotaSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock, self._wall = clock, wall
        self.settings = settings
        self.async_settings = async_settings or AsyncQuotaSettings()
        self.sync = AdaptiveRateBudget(settings, clock)
        self.starts = AdaptiveRateBudget(self._start_settings(), clock)
        self.jobs: dict[str, float] = {}  # client token -> lease expiry (wall clock)
        # Batch inference jobs submitted and not yet collected: job name -> lease expiry.
        self.batch_jobs: dict[str, float] = {}
        # Async jobs started and not yet collected: client token -> what the job is (its ARN,
        # asset, content version and run), for the journal of the run that started it.
        self.started: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, RunAccount] = {}
        self.last_used = wall()
        self.restarts = 0

    def _start_settings(self) -> RateBudgetSettings:
        return RateBudgetSettings(self.async_settings.requests_per_minute, _UNWEIGHED)

    # -- configuration --------------------------------------------------------------------------
    def attach(
        self, settings: RateBudgetSettings, async_settings: AsyncQuotaSettings | None = None
    ) -> bool:
        """A job joins the guard. Keeps what it learned unless the configured quota differs or
        the guard sat idle for :data:`IDLE_RESET_S`; returns whether it started afresh."""
        async_settings = async_settings or AsyncQuotaSettings()
        idle = self._wall() - self.last_used > IDLE_RESET_S
        fresh = idle or settings != self.settings or async_settings != self.async_settings
        if fresh:
            self.settings, self.async_settings = settings, async_settings
            self.sync = AdaptiveRateBudget(settings, self._clock)
            self.starts = AdaptiveRateBudget(self._start_settings(), self._clock)
        self.last_used = self._wall()
        return fresh

    def open_run(self, run_id: str, max_calls: int | None, max_usd: float | None) -> None:
        """Open (or, after a restart, keep) a run's account."""
        acct = self.runs.setdefault(run_id, RunAccount())
        acct.max_calls, acct.max_usd = max_calls, max_usd

    def close_run(self, run_id: str) -> RunAccount | None:
        return self.runs.pop(run_id, None)

    # -- spending ----------------------------------------------------------------------------------
    def _charge(self, run_id: str | None, usd: float) -> bool:
        acct = self.runs.get(run_id) if run_id is not None else None
        if acct is None:
            return True
        if acct.stopped is None:
            if acct.max_calls is not None and acct.calls + 1 > acct.max_calls:
                acct.stopped = f"limits.max_calls={acct.max_calls} reached after {acct.calls} calls"
            elif acct.max_usd is not None and (
                acct.usd >= acct.max_usd or acct.usd + usd > acct.max_usd
            ):
                acct.stopped = (
                    f"limits.max_usd={acct.max_usd:g} reached (${acct.usd:.6f} spent, the next "
                    f"call would cost ${usd:.6f})"
                )
        if acct.stopped is not None:
            return False
        acct.calls += 1
        acct.usd += usd
        return True

    def charge(self, run_id: str | None, usd: float) -> None:
        """Correct a run's spending after the fact (reported tokens, an async job's output)."""
        acct = self.runs.get(run_id) if run_id is not None else None
        if acct is not None:
            acct.usd = max(0.0, acct.usd + usd)

    def stop_reason(self, run_id: str) -> str | None:
        acct = self.runs.get(run_id)
        return acct.stopped if acct is not None else None

    # -- synchronous calls ---------------------------------------------------------------------
    def reserve(self, tokens: int = 1, run_id: str | None = None, usd: float = 0.0) -> float:
        """Seconds to wait before one InvokeModel attempt, or :data:`STOP` (spending limit)."""
        self.last_used = self._wall()
        if not self._charge(run_id, usd):
            return STOP
        return self.sync.reserve(tokens)

    def reserve_many(
        self, costs: Sequence[tuple[int, float]], run_id: str | None = None
    ) -> list[float]:
        """:meth:`reserve` for a batch of attempts, each given as (tokens, usd): the seconds each
        waits from now, or :data:`STOP` for those over a spending limit."""
        return [self.reserve(tokens, run_id, usd) for tokens, usd in costs]

    def report(
        self,
        successes: int,
        throttles: int,
        estimated: int = 0,
        actual: int = 0,
        run_id: str | None = None,
        usd: float = 0.0,
    ) -> None:
        if actual and estimated:
            self.sync.refund_tokens(estimated, actual)
        self.sync.report(successes, throttles)
        acct = self.runs.get(run_id) if run_id is not None else None
        if acct is not None:
            acct.throttles += throttles
        if usd:
            self.charge(run_id, usd)

    # -- service segmentation (async jobs) ------------------------------------------------------
    def reserve_start(self, run_id: str | None = None) -> float:
        """Seconds to wait before one StartAsyncInvoke attempt, or :data:`STOP`."""
        self.last_used = self._wall()
        if not self._charge(run_id, 0.0):
            return STOP
        return self.starts.reserve(1)

    def report_start(self, successes: int, throttles: int, run_id: str | None = None) -> None:
        self.starts.report(successes, throttles)
        acct = self.runs.get(run_id) if run_id is not None else None
        if acct is not None:
            acct.throttles += throttles

    def acquire_job(self, token: str, lease_s: float) -> bool:
        """A slot for one async job in progress (the same token holds the same slot); False
        when ``max_concurrent_jobs`` are in progress. A slot whose holder died is freed when its
        lease expires."""
        now = self._wall()
        self.last_used = now
        for held, expiry in list(self.jobs.items()):
            if expiry < now:
                del self.jobs[held]
        if token not in self.jobs and len(self.jobs) >= self.async_settings.max_concurrent_jobs:
            return False
        self.jobs[token] = now + lease_s
        return True

    def release_job(self, token: str) -> None:
        self.jobs.pop(token, None)
        self.started.pop(token, None)

    def job_started(self, token: str, job: dict[str, Any]) -> None:
        """An async job was started under ``token`` (``job``: arn, asset_id, content_version,
        run); kept until its slot is released."""
        if token in self.jobs:
            self.started[token] = dict(job)

    def started_jobs(self, run_id: str) -> list[dict[str, Any]]:
        """The async jobs in progress that ``run_id`` started, each with its ``token``."""
        return [{"token": t, **job} for t, job in self.started.items() if job.get("run") == run_id]

    def acquire_batch_job(self, name: str, lease_s: float, limit: int) -> bool:
        """A slot for one batch inference job (the same name holds the same slot); False when
        ``limit`` jobs hold one. A slot whose job was never collected is freed when its lease
        (the job's own timeout and a margin) expires."""
        now = self._wall()
        self.last_used = now
        for held, expiry in list(self.batch_jobs.items()):
            if expiry < now:
                del self.batch_jobs[held]
        if name not in self.batch_jobs and len(self.batch_jobs) >= limit:
            return False
        self.batch_jobs[name] = now + lease_s
        return True

    def release_batch_job(self, name: str) -> None:
        self.batch_jobs.pop(name, None)

    # -- what survives a restart -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "settings": dataclasses.asdict(self.settings),
            "async_settings": dataclasses.asdict(self.async_settings),
            "sync": self.sync.learned(),
            "starts": self.starts.learned(),
            "jobs": dict(self.jobs),
            "batch_jobs": dict(self.batch_jobs),
            "started": {k: dict(v) for k, v in self.started.items()},
            "runs": {k: dataclasses.asdict(v) for k, v in self.runs.items()},
            "last_used": self.last_used,
            "restarts": self.restarts,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` of the instance that died (its settings, its learned
        rates, its runs' spending and its job slots)."""
        self.settings = RateBudgetSettings(**state["settings"])
        self.async_settings = AsyncQuotaSettings(**state["async_settings"])
        self.sync = AdaptiveRateBudget(self.settings, self._clock)
        self.sync.restore(state["sync"])
        self.starts = AdaptiveRateBudget(self._start_settings(), self._clock)
        self.starts.restore(state["starts"])
        self.jobs = {str(k): float(v) for k, v in state.get("jobs", {}).items()}
        self.batch_jobs = {str(k): float(v) for k, v in state.get("batch_jobs", {}).items()}
        self.started = {str(k): dict(v) for k, v in state.get("started", {}).items()}
        self.runs = {k: RunAccount(**v) for k, v in state.get("runs", {}).items()}
        self.last_used = float(state.get("last_used", self._wall()))
        self.restarts = int(state.get("restarts", 0)) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.sync.snapshot(),
            "async_starts": self.starts.snapshot(),
            "async_jobs_in_progress": len(self.jobs),
            "batch_jobs_in_progress": len(self.batch_jobs),
            "restarts": self.restarts,
        }


def quota_scope(
    endpoint_url: str | None, region: str, model_id: str, account: str | None = None
) -> str:
    """The guard's name: one per account (or endpoint), region and model.

    The account is ``bedrock.quota.account`` when given. Otherwise, against AWS, it is the one
    STS ``GetCallerIdentity`` names (one call, which needs no permission); when that fails, the
    credentials' access key id stands in for it. Against any other endpoint (the local one, a
    proxy) the endpoint's address is the scope: whatever sits behind one address enforces one
    quota.
    """
    if account:
        who = f"account={account}"
    elif endpoint_url:
        from urllib.parse import urlsplit

        parts = urlsplit(endpoint_url)
        who = f"endpoint={parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    else:
        who = _aws_identity(region)
    return f"nova-mme-quota|{who}|{region}|{model_id}"


def guard_name(bedrock: Any, model_id: str) -> str:
    """The guard's name for a job's Bedrock configuration (:func:`quota_scope`)."""
    return quota_scope(bedrock.endpoint_url, bedrock.region, model_id, bedrock.quota.account)


def _aws_identity(region: str) -> str:
    import boto3
    from botocore.config import Config

    session = boto3.Session()
    try:
        sts = session.client(
            "sts",
            region_name=region,
            config=Config(connect_timeout=5, read_timeout=5, retries={"total_max_attempts": 2}),
        )
        return f"account={sts.get_caller_identity()['Account']}"
    except Exception as exc:  # no STS on the way: the key is the best identity left
        creds = session.get_credentials()
        key = creds.access_key if creds is not None else "none"
        log.warning("the AWS account is unknown (%s); quota guard keyed by the access key", exc)
        return f"key={key}"


def _kv() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    try:
        from ray.experimental import internal_kv

        if not internal_kv._internal_kv_initialized():
            return None
        return internal_kv._internal_kv_get, internal_kv._internal_kv_put
    except Exception:  # an older or newer Ray without it: restarts relearn
        return None


_ACTOR_CLASS: Any = None


def _actor_class() -> Any:
    global _ACTOR_CLASS
    if _ACTOR_CLASS is not None:
        return _ACTOR_CLASS
    import json
    import os

    import ray

    @ray.remote(num_cpus=0, max_concurrency=1)  # type: ignore[call-overload]
    class QuotaGuardActor:
        """The guard as a named, detached Ray actor. Its state is saved in the cluster's
        key-value store (the GCS) as it changes, so that the actor Ray restarts after a crash
        continues with the rates it had learned and the spending it had counted."""

        def __init__(
            self, name: str, settings: RateBudgetSettings, async_settings: AsyncQuotaSettings
        ) -> None:
            self.key = f"quota-guard/{name}".encode()
            self.guard = QuotaGuard(settings, async_settings)
            self.saved_at = 0.0
            kv = _kv()
            saved = kv[0](self.key, namespace=BUDGET_NAMESPACE) if kv else None
            if saved:
                try:
                    self.guard.restore(json.loads(saved))
                except Exception as exc:  # a state this version cannot read: start afresh
                    log.warning("quota guard state not restored: %s", exc)
            self._save(force=True)

        def _save(self, force: bool = False) -> None:
            now = time.monotonic()
            if not force and now - self.saved_at < 1.0:
                return
            kv = _kv()
            if kv is not None:
                kv[1](
                    self.key,
                    json.dumps(self.guard.state()).encode(),
                    overwrite=True,
                    namespace=BUDGET_NAMESPACE,
                )
                self.saved_at = now

        def _limited(self, run_id: str | None) -> bool:
            acct = self.guard.runs.get(run_id) if run_id is not None else None
            return acct is not None and (acct.max_calls is not None or acct.max_usd is not None)

        def attach(self, settings: RateBudgetSettings, async_settings: AsyncQuotaSettings) -> bool:
            fresh = self.guard.attach(settings, async_settings)
            self._save(force=True)
            return fresh

        def open_run(self, run_id: str, max_calls: int | None, max_usd: float | None) -> None:
            self.guard.open_run(run_id, max_calls, max_usd)
            self._save(force=True)

        def close_run(self, run_id: str) -> dict[str, Any] | None:
            acct = self.guard.close_run(run_id)
            self._save(force=True)
            return dataclasses.asdict(acct) if acct is not None else None

        def reserve(self, tokens: int, run_id: str | None = None, usd: float = 0.0) -> float:
            delay = self.guard.reserve(tokens, run_id, usd)
            # A run with limits has its count saved with every call: a restart never forgets one.
            self._save(force=self._limited(run_id))
            return delay

        def reserve_many(
            self, costs: list[tuple[int, float]], run_id: str | None = None
        ) -> list[float]:
            delays = self.guard.reserve_many(costs, run_id)
            self._save(force=self._limited(run_id))
            return delays

        def report(
            self,
            successes: int,
            throttles: int,
            estimated: int = 0,
            actual: int = 0,
            run_id: str | None = None,
            usd: float = 0.0,
        ) -> None:
            self.guard.report(successes, throttles, estimated, actual, run_id, usd)
            self._save(force=throttles > 0)

        def reserve_start(self, run_id: str | None = None) -> float:
            delay = self.guard.reserve_start(run_id)
            self._save(force=True)
            return delay

        def report_start(self, successes: int, throttles: int, run_id: str | None = None) -> None:
            self.guard.report_start(successes, throttles, run_id)
            self._save(force=throttles > 0)

        def charge(self, run_id: str | None, usd: float) -> None:
            self.guard.charge(run_id, usd)
            self._save(force=True)

        def acquire_job(self, token: str, lease_s: float) -> bool:
            ok = self.guard.acquire_job(token, lease_s)
            self._save(force=ok)
            return ok

        def release_job(self, token: str) -> None:
            self.guard.release_job(token)
            self._save(force=True)

        def job_started(self, token: str, job: dict[str, Any]) -> None:
            self.guard.job_started(token, job)
            self._save(force=True)

        def started_jobs(self, run_id: str) -> list[dict[str, Any]]:
            return self.guard.started_jobs(run_id)

        def acquire_batch_job(self, name: str, lease_s: float, limit: int) -> bool:
            ok = self.guard.acquire_batch_job(name, lease_s, limit)
            self._save(force=True)
            return ok

        def release_batch_job(self, name: str) -> None:
            self.guard.release_batch_job(name)
            self._save(force=True)

        def stop_reason(self, run_id: str) -> str | None:
            return self.guard.stop_reason(run_id)

        def run_account(self, run_id: str) -> dict[str, Any] | None:
            acct = self.guard.runs.get(run_id)
            return dataclasses.asdict(acct) if acct is not None else None

        def snapshot(self) -> dict[str, Any]:
            return self.guard.snapshot()

        def pid(self) -> int:
            return os.getpid()

    _ACTOR_CLASS = QuotaGuardActor
    return _ACTOR_CLASS


def get_or_create_budget(
    settings: RateBudgetSettings,
    name: str = BUDGET_ACTOR_NAME,
    reset: bool = True,
    async_settings: AsyncQuotaSettings | None = None,
    timeout_s: float = 60.0,
) -> Any:
    """The guard named ``name`` (a detached Ray actor in namespace :data:`BUDGET_NAMESPACE`),
    created on first use; any job on the cluster that names the same account, region and model
    gets the same one.

    ``reset`` attaches the job: the guard keeps what it learned unless the quota configured here
    differs from the one it runs with (or it sat idle for :data:`IDLE_RESET_S`).
    """
    import ray

    async_settings = async_settings or AsyncQuotaSettings()
    actor = (
        _actor_class()
        .options(
            name=name,
            namespace=BUDGET_NAMESPACE,
            get_if_exists=True,
            # Detached: it outlives the job that created it, so that concurrent and later jobs of
            # the cluster share it; Ray restarts it when its process dies (state kept in the GCS).
            lifetime="detached",
            max_restarts=-1,
            max_task_retries=-1,
        )
        .remote(name, settings, async_settings)
    )
    if reset:
        ray.get(actor.attach.remote(settings, async_settings), timeout=timeout_s)
    return actor


class GuardHandle:
    """A worker's (or the driver's) line to the guard.

    Every call has a timeout. A guard that is gone (its actor killed for good, not just
    restarting) is created again once, from the state it saved, before the run gives up with
    :class:`~pipelines.core.errors.InfrastructureError`: no call may go out unpaced.
    """

    def __init__(
        self,
        name: str,
        settings: RateBudgetSettings,
        async_settings: AsyncQuotaSettings | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.name = name
        self.settings = settings
        self.async_settings = async_settings or AsyncQuotaSettings()
        self.timeout_s = timeout_s
        self._handle: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None}

    def attach(self) -> Any:
        """Create or join the guard and attach this job's quota to it (the driver, once); a
        guard that does not answer in time stops the run as an infrastructure failure."""
        import ray

        from pipelines.core.errors import InfrastructureError

        try:
            self._handle = get_or_create_budget(
                self.settings,
                self.name,
                reset=True,
                async_settings=self.async_settings,
                timeout_s=self.timeout_s,
            )
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
            self._handle = None
            raise InfrastructureError(
                f"the quota guard {self.name!r} did not take this job's quota within "
                f"{self.timeout_s:g} s ({type(exc).__name__}); no call may go out unpaced"
            ) from exc
        return self._handle

    def _actor(self) -> Any:
        if self._handle is None:
            import ray

            try:
                self._handle = ray.get_actor(self.name, namespace=BUDGET_NAMESPACE)
            except ValueError:  # gone for good: a new one, from the saved state
                self._handle = get_or_create_budget(
                    self.settings, self.name, reset=False, async_settings=self.async_settings
                )
        return self._handle

    def ask(self, method: str, *args: Any) -> Any:
        """Call ``method`` on the guard and wait for its answer (at most ``timeout_s``)."""
        import ray

        from pipelines.core.errors import InfrastructureError

        for attempt in range(2):
            try:
                return ray.get(getattr(self._actor(), method).remote(*args), timeout=self.timeout_s)
            except ray.exceptions.RayActorError as exc:
                self._handle = None
                if attempt:
                    raise InfrastructureError(
                        f"the quota guard {self.name!r} is gone and could not be restarted "
                        f"({type(exc).__name__}); no call may go out unpaced"
                    ) from exc
            except ray.exceptions.GetTimeoutError as exc:
                raise InfrastructureError(
                    f"the quota guard {self.name!r} did not answer within {self.timeout_s:g} s; "
                    "no call may go out unpaced"
                ) from exc
        raise AssertionError("unreachable")

    def tell(self, method: str, *args: Any) -> None:
        """Call ``method`` without waiting (feedback must not slow the call path)."""
        try:
            getattr(self._actor(), method).remote(*args)
        except Exception:  # the next ask() recovers the guard or stops the run
            self._handle = None
