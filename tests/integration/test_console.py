"""What a user sees: a backfill of over half a minute, run in a pseudo-terminal like a person would.

The status line must be redrawn in place every few seconds with counts that move, and neither
Ray's INFO lines nor the core worker's C++ log lines may reach the screen.
"""

from __future__ import annotations

import itertools
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ASSETS = 48
# 48 calls at 80 a minute: the calls alone span 35 s (the quota guard's burst is half a second),
# so the status is drawn for longer than the 30 s the test asks of the run, however busy the host.
QUOTA_PER_MIN = 80
STATUS = re.compile(r"\[backfill\] (\d+)/(\d+) assets")
REDRAW = "\r\x1b[2K"


def _run_in_pty(
    args: list[str], cwd: Path, timeout_s: float
) -> tuple[int, list[tuple[float, str]]]:
    """Run ``args`` with a pseudo-terminal as stdout and stderr; every chunk read, timestamped."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append((time.monotonic(), data.decode("utf-8", "replace")))
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return rc, chunks


def test_a_backfill_in_a_terminal_shows_a_live_status_and_no_ray_chatter(
    emulator: Endpoints, tmp_path: Path
) -> None:
    emulator.emulator.configure(latency={"text": 150.0})
    rows = [
        {"asset_id": f"note-{i:03d}", "text": f"note {i}: " + "lorem ipsum dolor " * 40}
        for i in range(ASSETS)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    args = [
        sys.executable,
        "-m",
        "jobs.backfill",
        "usecase=text_retrieval",
        f"manifest={tmp_path / 'm.parquet'}",
        *emulator.pipeline_overrides(),
        f"bedrock.quota.requests_per_minute={QUOTA_PER_MIN}",
        # Small embed batches: results reach the driver every few assets.
        "resources.embed.max_in_flight=4",
        f"qdrant.path={tmp_path / 'qdrant'}",
        f"run_dir={tmp_path / 'runs'}",
    ]
    rc, chunks = _run_in_pty(args, tmp_path, timeout_s=240)
    text = "".join(c for _, c in chunks)
    assert rc == 0, text[-3000:]

    # Every redraw of the status line, when it reached the terminal.
    redraws: list[tuple[float, int]] = []
    for t, chunk in chunks:
        for piece in chunk.split(REDRAW)[1:]:
            m = STATUS.match(piece)
            if m:
                redraws.append((t, int(m.group(1))))
    assert redraws, text[-3000:]
    assert all(total == str(ASSETS) for total in re.findall(r"/(\d+) assets", text))
    times = [t for t, _ in redraws]
    # In place (carriage return + erase line, not new lines), at least every few seconds.
    assert times[-1] - times[0] >= 30, "the run was meant to last over half a minute"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 5.0, f"the status went {max(gaps):.1f}s without an update"
    assert not re.search(r"\n\[backfill\] \d+/\d+ assets", text), "status printed as new lines"
    # The counts move during the run, not only at its end.
    settled = sorted({n for _, n in redraws})
    assert len([n for n in settled if 0 < n < ASSETS]) >= 3, settled
    # No Ray INFO lines, no C++ log lines of the core worker.
    assert not re.search(r"\bINFO\b", text), text[:3000]
    assert "core_worker" not in text and not re.search(r"\] \S+\.cc:\d+", text)
    # A short summary at the end, with where the files are.
    assert "report:" in text and "report.json" in text and "dead letter:" in text
