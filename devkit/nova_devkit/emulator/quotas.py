"""Requests-per-minute and tokens-per-minute quotas as token buckets.

Each bucket holds ``burst_seconds`` worth of quota and refills continuously, which is how a
per-minute quota feels to a client: short bursts pass, sustained excess is throttled. A single
request bigger than the whole bucket is let through when the bucket is full (leaving it in debt),
otherwise a long video could never pass a small token quota.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from nova_devkit.emulator.config import EmulatorQuotaConfig
from nova_devkit.emulator.errors import TOO_MANY_REQUESTS, TOO_MANY_TOKENS, ApiError


class TokenBucket:
    """A continuously refilled bucket; ``rate`` units per second, at most ``capacity``."""

    def __init__(
        self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.capacity = max(capacity, 1.0)
        self._clock = clock
        self._level = self.capacity
        self._stamp = clock()

    def try_take(self, amount: float) -> bool:
        """Take ``amount`` if the bucket allows it now; never blocks."""
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._level >= amount or self._level >= self.capacity:
            self._level -= amount
            return True
        return False


class QuotaEnforcer:
    """The endpoint's quotas; 0 in the config means unlimited."""

    def __init__(
        self, cfg: EmulatorQuotaConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.configure(cfg)

    def configure(self, cfg: EmulatorQuotaConfig) -> None:
        """Replace the quotas (buckets start full)."""
        with self._lock:
            self._requests = self._bucket(cfg.requests_per_minute, cfg.burst_seconds)
            self._tokens = self._bucket(cfg.tokens_per_minute, cfg.burst_seconds)

    def _bucket(self, per_minute: float, burst_seconds: float) -> TokenBucket | None:
        if per_minute <= 0:
            return None
        rate = per_minute / 60.0
        return TokenBucket(rate, rate * burst_seconds, self._clock)

    def take_request(self) -> None:
        """Count one request or raise ThrottlingException ("Too many requests ...")."""
        with self._lock:
            if self._requests is not None and not self._requests.try_take(1):
                raise ApiError("ThrottlingException", TOO_MANY_REQUESTS)

    def take_tokens(self, tokens: int) -> None:
        """Count a request's tokens or raise ThrottlingException ("Too many tokens ...")."""
        with self._lock:
            if self._tokens is not None and not self._tokens.try_take(tokens):
                raise ApiError("ThrottlingException", TOO_MANY_TOKENS)
