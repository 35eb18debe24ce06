"""What a user watches while a job runs: one live status line, and plain lines for logs.

On a terminal the status line is redrawn in place every ``refresh_s`` (assets settled of total,
calls per minute against the quota, throttles, dead letters, points, elapsed time and an ETA);
anything else the job says is printed above it. When the output is not a terminal (a log file,
``ray job logs``) the same status is printed as a plain line every ``log_every_s``. A daemon
thread draws it, so the line moves even while no batch reaches the driver (long decodes).

Ray's own INFO lines and the core worker's start-up chatter are hidden by the runner unless
``ray.verbose=true`` (see :func:`pipelines.core.runner.init_ray`).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from pipelines.core.ledger import Progress

# A line of Ray's C++ log: "[2026-12-01 05:04:50,854 E 14850 14850] core_worker.cc:2465: ...".
# Fatal ("F") lines are kept.
_NATIVE_LOG_LINE = re.compile(
    rb"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [TDIWE] \d+ \d+\] \S+\.cc:\d+"
)
_native_filter: threading.Thread | None = None

# Rates (calls per minute, assets per second for the ETA) are measured over this window.
RATE_WINDOW_S = 30.0


def hide_native_log_lines() -> None:
    """Drop Ray's C++ log lines from this process's stderr (file descriptor 2); everything else
    written there passes through unchanged. Idempotent; undone at exit so that nothing written
    last (a traceback) is lost."""
    global _native_filter
    if _native_filter is not None:
        return
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    real_stderr = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as source:
            while chunk := source.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not _NATIVE_LOG_LINE.match(line):
                        os.write(real_stderr, line + b"\n")
        if pending:
            os.write(real_stderr, pending)

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)  # closes the pipe's last write end: the pump drains and ends
        if _native_filter is not None:
            _native_filter.join(timeout=2)

    _native_filter = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    _native_filter.start()
    atexit.register(restore)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m"


class Console:
    """The job's voice: :meth:`say` for lines, :meth:`watch` for the live status."""

    def __init__(
        self,
        job: str,
        *,
        quota_rpm: float | None = None,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        refresh_s: float = 1.0,
        log_every_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self.quota_rpm = quota_rpm
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.every_s = refresh_s if self.interactive else log_every_s
        self.clock = clock
        self._lock = threading.Lock()
        self._live = False  # a status line is on screen (interactive only)
        self._status: Callable[[], Progress] | None = None
        self._started = clock()
        self._samples: deque[tuple[float, int, int]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lines -----------------------------------------------------------------------------------

    def say(self, msg: str) -> None:
        """A permanent line (above the live status on a terminal)."""
        with self._lock:
            self._clear()
            self.stream.write(f"[{self.job}] {msg}\n")
            self.stream.flush()
            self._draw()

    # -- live status -----------------------------------------------------------------------------

    def watch(self, status: Callable[[], Progress]) -> None:
        """Start drawing ``status()`` until :meth:`stop`."""
        self._status = status
        self._started = self.clock()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="console", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the live status, leaving its last state on screen (or in the log)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            if self._status is not None:
                self._emit(final=True)
            self._status = None

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            with self._lock:
                self._emit(final=False)

    def _emit(self, final: bool) -> None:
        if self._status is None:
            return
        line = self.render(self._status())
        if self.interactive:
            width = shutil.get_terminal_size((120, 24)).columns
            self.stream.write("\r\x1b[2K" + line[: max(20, width - 1)])
            self._live = True
            if final:
                self.stream.write("\n")
                self._live = False
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self._live:
            self.stream.write("\r\x1b[2K")

    def _draw(self) -> None:
        if self._live:
            self._emit(final=False)

    def render(self, p: Progress) -> str:
        """The status line for ``p`` now."""
        now = self.clock()
        elapsed = now - self._started
        self._samples.append((now, p.bedrock_calls, p.settled))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        t0, calls0, settled0 = self._samples[0]
        span = now - t0
        if span < 1.0:  # too early for a window: the run so far
            span, calls0, settled0 = max(elapsed, 1e-6), 0, 0
        calls_per_min = (p.bedrock_calls - calls0) / span * 60.0
        settle_rate = (p.settled - settled0) / span
        pct = f" ({100 * p.settled / p.total:.0f}%)" if p.total else ""
        parts = [f"[{self.job}] {p.settled}/{p.total} assets{pct}"]
        parts.append(f"{p.failed} dead-lettered")
        quota = f" of {self.quota_rpm:,.0f} quota" if self.quota_rpm else ""
        parts.append(f"{calls_per_min:,.0f} calls/min{quota}")
        parts.append(f"{p.throttles} throttled")
        parts.append(f"{p.points:,} points")
        parts.append(_duration(elapsed))
        remaining = p.total - p.settled
        if remaining <= 0:
            parts.append("done")
        elif settle_rate > 0:
            parts.append(f"ETA {_duration(remaining / settle_rate)}")
        else:
            parts.append("ETA -")
        return " | ".join(parts)
