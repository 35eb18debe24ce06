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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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


BUDGET_ACTOR_NAME = "nova-mme-rate-budget"
BUDGET_NAMESPACE = "nova-embed-pipelines"


def get_or_create_budget(
    settings: RateBudgetSettings, name: str = BUDGET_ACTOR_NAME, reset: bool = True
) -> Any:
    """The cluster-wide budget actor (a named Ray actor), created on first use.

    ``reset`` re-applies ``settings`` to an existing actor, so that a new run with a new quota is
    not paced by the previous run's state.
    """
    import ray

    @ray.remote(num_cpus=0, max_concurrency=1)  # type: ignore[call-overload]
    class RateBudgetActor:
        def __init__(self, settings: RateBudgetSettings) -> None:
            self.budget = AdaptiveRateBudget(settings)

        def configure(self, settings: RateBudgetSettings) -> None:
            self.budget = AdaptiveRateBudget(settings)

        def reserve(self, tokens: int) -> float:
            return self.budget.reserve(tokens)

        def report(self, successes: int, throttles: int, estimated: int, actual: int) -> None:
            if actual and estimated:
                self.budget.refund_tokens(estimated, actual)
            self.budget.report(successes, throttles)

        def snapshot(self) -> dict[str, Any]:
            return self.budget.snapshot()

    # A budget actor that dies is restarted by Ray (with the configured quota: what it had learned
    # is lost, and the first throttles teach it again); calls made while it restarts are retried.
    actor = RateBudgetActor.options(  # type: ignore[attr-defined]
        name=name,
        namespace=BUDGET_NAMESPACE,
        get_if_exists=True,
        lifetime=None,
        max_restarts=-1,
        max_task_retries=-1,
    ).remote(settings)
    if reset:
        ray.get(actor.configure.remote(settings))
    return actor
