"""Fault injection: by rate per code (seeded) and by script (outcomes for the next requests)."""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nova_devkit.emulator.errors import ERROR_STATUS, FAULT_CODES

OK = "ok"


@dataclass(frozen=True)
class Outcome:
    """What to do with one request: ``code`` is ``"ok"`` (serve normally), a service error code,
    ``DroppedConnection`` or ``MalformedBody``; ``delay_ms`` is added before answering."""

    code: str = OK
    message: str | None = None
    delay_ms: float = 0.0

    @staticmethod
    def parse(item: str | Mapping[str, Any] | Outcome) -> Outcome:
        """Accept a code (``"ThrottlingException"``) or ``{"code", "message", "delay_ms"}``."""
        if isinstance(item, Outcome):
            out = item
        elif isinstance(item, str):
            out = Outcome(code=item)
        elif isinstance(item, Mapping):
            unknown = set(item) - {"code", "message", "delay_ms"}
            if unknown:
                raise ValueError(f"unknown outcome keys {sorted(unknown)}")
            out = Outcome(
                code=str(item.get("code", OK)),
                message=item.get("message"),
                delay_ms=float(item.get("delay_ms", 0.0)),
            )
        else:
            raise ValueError(f"an outcome is a code or a mapping, not {type(item).__name__}")
        if out.code != OK and out.code not in FAULT_CODES and out.code not in ERROR_STATUS:
            raise ValueError(f"unknown outcome code {out.code!r}; known: {[OK, *FAULT_CODES]}")
        return out


def check_rates(faults: Mapping[str, float]) -> dict[str, float]:
    """Validate a ``{code: probability}`` mapping (sum at most 1)."""
    out: dict[str, float] = {}
    for code, rate in faults.items():
        if code not in FAULT_CODES:
            raise ValueError(f"unknown fault code {code!r}; known: {list(FAULT_CODES)}")
        r = float(rate)
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"fault rate for {code} must be in [0, 1], got {rate}")
        out[code] = r
    if sum(out.values()) > 1.0 + 1e-9:
        raise ValueError("fault rates sum to more than 1")
    return out


class FaultInjector:
    """Decides each request's :class:`Outcome`: the script first, then the random rates."""

    def __init__(self, rates: Mapping[str, float], seed: int) -> None:
        self._lock = threading.Lock()
        self._script: deque[Outcome] = deque()
        self.configure(rates, seed)

    def configure(self, rates: Mapping[str, float], seed: int | None = None) -> None:
        """Replace the rates; a new ``seed`` restarts the random sequence."""
        checked = check_rates(rates)
        with self._lock:
            # Sorted so that the same config draws the same faults whatever the dict order.
            self._rates = sorted(checked.items())
            if seed is not None:
                self._rng = random.Random(seed)

    def script(self, outcomes: Iterable[str | Mapping[str, Any] | Outcome]) -> int:
        """Queue outcomes for the next requests; returns the queue length."""
        parsed = [Outcome.parse(o) for o in outcomes]
        with self._lock:
            self._script.extend(parsed)
            return len(self._script)

    def clear_script(self) -> None:
        """Drop any queued outcomes."""
        with self._lock:
            self._script.clear()

    @property
    def pending(self) -> int:
        """Outcomes still queued."""
        with self._lock:
            return len(self._script)

    def next(self) -> Outcome:
        """The outcome of the next request."""
        with self._lock:
            if self._script:
                return self._script.popleft()
            if not self._rates:
                return Outcome()
            u = self._rng.random()
            acc = 0.0
            for code, rate in self._rates:
                acc += rate
                if u < acc:
                    return Outcome(code=code)
            return Outcome()
