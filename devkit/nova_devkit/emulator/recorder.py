"""What the endpoint saw: one :class:`RequestRecord` per service request, and counters.

The handler opens a record when a request arrives (:meth:`RequestRecorder.begin`) and closes it
just before the answer is sent (:meth:`RequestRecorder.end`), so a client that has its answer
finds its request in :meth:`RequestRecorder.records` and :meth:`RequestRecorder.stats`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass
class RequestRecord:
    """One request as it crossed the wire (bodies summarised: no base64, long text cut)."""

    seq: int
    timestamp: float
    request_id: str
    method: str
    path: str
    operation: str
    model_id: str | None
    body: Any
    status: int = 0
    error_code: str | None = None
    error_message: str | None = None
    injected: str | None = None
    modality: str | None = None
    tokens: int | None = None
    duration_ms: float = 0.0
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)


def summarize_body(value: Any, preview: int) -> Any:
    """A copy of a JSON body without large payloads: ``bytes`` become ``"<N base64 chars>"`` and
    text values longer than ``preview`` characters are cut (their length is kept)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "bytes" and isinstance(v, str):
                out[k] = f"<{len(v)} base64 chars>"
            elif k == "value" and isinstance(v, str) and len(v) > preview:
                out[k] = v[:preview] + "..."
                out["valueLength"] = len(v)
            else:
                out[k] = summarize_body(v, preview)
        return out
    if isinstance(value, list):
        return [summarize_body(v, preview) for v in value]
    return value


class RequestRecorder:
    """Thread-safe request records (the most recent ones) and counters since the last reset."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every record and zero every counter."""
        with self._lock:
            self._records: list[RequestRecord] = []
            self._seq = 0
            self._by_op: Counter[str] = Counter()
            self._by_modality: Counter[str] = Counter()
            self._errors: Counter[str] = Counter()
            self._injected: Counter[str] = Counter()
            self._tokens = 0
            self._successes = 0
            self._throttles = 0
            self._in_flight = 0
            self._max_in_flight = 0

    def begin(self, rec: RequestRecord) -> None:
        """A request arrived: number it and count it in flight."""
        with self._lock:
            self._seq += 1
            rec.seq = self._seq
            self._by_op[rec.operation] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def end(self, rec: RequestRecord, max_records: int) -> None:
        """The request is answered (or dropped): count its outcome and keep its record (at most
        ``max_records`` are kept, the oldest go first)."""
        with self._lock:
            self._in_flight -= 1
            if rec.modality:
                self._by_modality[rec.modality] += 1
            if rec.injected:
                self._injected[rec.injected] += 1
            if rec.error_code:
                self._errors[rec.error_code] += 1
                if rec.error_code == "ThrottlingException":
                    self._throttles += 1
            elif rec.status == 200:
                self._successes += 1
                self._tokens += rec.tokens or 0
            self._records.append(rec)
            overflow = len(self._records) - max_records
            if overflow > 0:
                del self._records[:overflow]

    def records(self) -> list[RequestRecord]:
        """The kept records, oldest first (a copy of the list)."""
        with self._lock:
            return list(self._records)

    def stats(self) -> dict[str, Any]:
        """The counters: requests by operation and modality, outcomes, tokens, concurrency."""
        with self._lock:
            return {
                "requests": sum(self._by_op.values()),
                "by_operation": dict(self._by_op),
                "by_modality": dict(self._by_modality),
                "successes": self._successes,
                "throttles": self._throttles,
                "errors": dict(self._errors),
                "injected": dict(self._injected),
                "tokens": self._tokens,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
            }
