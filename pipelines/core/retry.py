"""The one retry helper: every retried call of the project goes through :func:`retry_call`.

A call is retried when the caller's ``classify`` says the exception is worth retrying, until the
attempts or the deadline run out; between attempts it sleeps a full-jitter exponential backoff:
before retry ``n`` (``n`` from 1) a delay drawn from ``U(0, min(cap_s, base_s * 2**(n-1)))``, so
the first retry waits at most ``base_s``; a classifier may ask for a longer minimum (a server's
``Retry-After``). When the call cannot be retried any more, the last exception propagates
unchanged.

Hooks let a caller keep its own accounting without writing its own loop: ``before_attempt(n)``
runs before every attempt (the embed stage paces each one through the rate budget there), and
``on_failure(failure)`` after every failed attempt, with the decision taken (counting throttles
and retries, logging). The clock, the sleep and the random source are arguments, so tests run
without real time.

Users: the Bedrock client (:meth:`~pipelines.bedrock.client.NovaEmbeddingsClient.embed_with_retry`),
the embed stage's per-request loop, the async jobs (start and poll) and the Qdrant store.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Decision:
    """What to do about one failed attempt: retry or not, and the least delay before retrying."""

    retry: bool
    min_delay_s: float = 0.0


RETRY = Decision(True)
GIVE_UP = Decision(False)

Classify = Callable[[BaseException], "Decision | bool"]


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying and how long to wait in between.

    ``max_attempts``: attempts in all, the first included (None: no limit, then a deadline is
    needed). ``deadline_s``: seconds from the first attempt after which no retry starts (the last
    wait is cut short to end at the deadline, and one last attempt is made there). ``base_s`` and
    ``cap_s``: the backoff (see the module docstring).
    """

    max_attempts: int | None = 5
    deadline_s: float | None = None
    base_s: float = 0.5
    cap_s: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts is None and self.deadline_s is None:
            raise ValueError("a retry policy needs max_attempts or deadline_s")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("base_s and cap_s must be >= 0")

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """The delay before retry ``retry`` (from 1): U(0, min(cap_s, base_s * 2**(retry-1)))."""
        if retry < 1:
            raise ValueError(f"retries count from 1, got {retry}")
        ceiling = min(self.cap_s, self.base_s * 2.0 ** (retry - 1))
        return (rng or random).uniform(0.0, ceiling)


@dataclass(frozen=True)
class Failure:
    """One failed attempt, as the ``on_failure`` hook sees it.

    ``attempt`` counts from 1. ``retryable`` is the classifier's verdict; ``retry`` whether another
    attempt follows (a retryable failure is not retried when the attempts or the deadline have run
    out: then ``exhausted`` is True); ``delay_s`` is the sleep before it (0 when none).
    """

    attempt: int
    error: BaseException
    retryable: bool
    retry: bool
    delay_s: float

    @property
    def exhausted(self) -> bool:
        return self.retryable and not self.retry


def retry_call(
    fn: Callable[[], T],
    classify: Classify,
    policy: RetryPolicy,
    *,
    before_attempt: Callable[[int], None] | None = None,
    on_failure: Callable[[Failure], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """``fn()``, retried as ``policy`` says while ``classify`` says the failure is retryable.

    Only :class:`Exception`\\ s are classified; the last one propagates unchanged when the call
    gives up (not retryable, attempts used up, or deadline passed).
    """
    deadline = None if policy.deadline_s is None else clock() + policy.deadline_s
    attempt = 0
    while True:
        attempt += 1
        if before_attempt is not None:
            before_attempt(attempt)
        try:
            return fn()
        except Exception as exc:
            verdict = classify(exc)
            decision = verdict if isinstance(verdict, Decision) else Decision(bool(verdict))
            retry = decision.retry and (
                policy.max_attempts is None or attempt < policy.max_attempts
            )
            delay = 0.0
            if retry:
                delay = max(policy.backoff(attempt, rng), decision.min_delay_s)
                if deadline is not None:
                    remaining = deadline - clock()
                    retry = remaining > 0
                    delay = min(delay, max(remaining, 0.0)) if retry else 0.0
            if on_failure is not None:
                on_failure(Failure(attempt, exc, decision.retry, retry, delay))
            if not retry:
                raise
        sleep(delay)
