"""``kill -9`` in the middle of a backfill, then the same command again.

The job runs as a real process (its own Ray) over assets of a slow-decoding modality registered
by that process (``slow_modality.py``), so that decode tasks and embed actors are both at work;
once at least 40% of its calls reached the local endpoint, the driver, a decode task or an embed
actor is killed with SIGKILL. The same command is then run again. The collection must end exactly
as an uninterrupted run leaves it (ids, vectors, payloads), and the re-run pays only for the
assets that were not complete.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from tests.integration.conftest import SlowCollection

# One xdist worker runs both modules (`--dist loadgroup`): the session fixture `uninterrupted`
# (tests/integration/conftest.py), a whole backfill, is then made once, not once per worker.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("uninterrupted")]

ASSETS = 12
CHUNKS = 5  # segments per asset: 60 calls in all
HERE = Path(__file__).resolve().parent
JOB = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
from ray import cloudpickle
import slow_modality
cloudpickle.register_pickle_by_value(slow_modality)
from pipelines.modalities import register
register(slow_modality.SlowText())
from pipelines.backfill import run_backfill
from pipelines.config.compose import compose_backfill
sys.exit(run_backfill(compose_backfill(sys.argv[1:])).exit_code)
"""


def _manifest(root: Path) -> Path:
    rows = []
    for i in range(ASSETS):
        path = root / f"asset-{i:02d}.slow"
        path.write_text("\n".join(f"asset {i} line {k}: lorem ipsum" for k in range(CHUNKS)))
        rows.append({"asset_id": f"asset-{i:02d}", "uri": str(path)})
    path = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _args(manifest: Path, root: Path, emulator: Endpoints, paced: bool = True) -> list[str]:
    """The job's command; ``paced=False`` (a run nobody kills) lifts the test's quota (the
    decoder's pace is the environment's, see ``slow_modality.py``)."""
    return [
        sys.executable,
        "-c",
        JOB,
        "usecase.name=slow",
        "usecase.modalities=[slow_text]",
        f"manifest={manifest}",
        *emulator.pipeline_overrides(),
        "qdrant.collection=slow",
        *(["bedrock.quota.requests_per_minute=240"] if paced else []),
        # Small blocks and batches: every stage is busy while the calls go on.
        "resources.embed.max_in_flight=4",
        f"qdrant.path={root / 'qdrant'}",
        f"run_dir={root / 'runs'}",
        f"state.path={root / 'state'}",
    ]


def _unpaced_env() -> dict[str, str]:
    """The environment of a run nobody kills: the slow decoder decodes at once."""
    return {**os.environ, "SLOW_TEXT_SECONDS_PER_SEGMENT": "0"}


def _calls(emulator: Endpoints) -> int:
    return sum(1 for r in emulator.emulator.requests if r.operation == "InvokeModel")


def _points(root: Path) -> dict[str, tuple[list[float], dict[str, Any]]]:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(root / "qdrant"))
    try:
        records, _ = client.scroll("slow", limit=10_000, with_vectors=True)
        return {str(r.id): (list(r.vector), dict(r.payload or {})) for r in records}
    finally:
        client.close()


def _journaled(root: Path) -> int:
    import sqlite3

    db = sqlite3.connect(root / "state" / "journal.sqlite")
    try:
        return int(
            db.execute("SELECT COUNT(*) FROM assets WHERE outcome = 'embedded'").fetchone()[0]
        )
    finally:
        db.close()


def _victim(proc: subprocess.Popen[bytes], target: str) -> psutil.Process:
    if target == "driver":
        return psutil.Process(proc.pid)
    # Ray titles a stage's workers after it (pipelines/core/runner.py: _named).
    marker = {"embed actor": "MapBatches(embed)", "decode task": "MapBatches(decode)"}[target]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                if marker in " ".join(child.cmdline()):
                    return child
            except psutil.Error:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no {target} process found")


def _kill_all(proc: subprocess.Popen[bytes], tree: list[psutil.Process]) -> None:
    """The job's whole process tree (its Ray too): nothing of it may call the endpoint after."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for p in tree:
        with contextlib.suppress(psutil.Error):
            p.kill()
    proc.wait(timeout=30)
    psutil.wait_procs(tree, timeout=30)


def _quiet(emulator: Endpoints, seconds: float = 1.5) -> None:
    """Wait until no call has reached the endpoint for ``seconds``."""
    last, since = _calls(emulator), time.monotonic()
    while time.monotonic() - since < seconds:
        time.sleep(0.1)
        now = _calls(emulator)
        if now != last:
            last, since = now, time.monotonic()


@pytest.mark.parametrize("target", ["driver", "embed actor", "decode task"])
def test_killed_run_resumes_to_the_collection_an_uninterrupted_run_makes(
    target: str,
    uninterrupted: SlowCollection,
    emulator: Endpoints,
    tmp_path: Path,
) -> None:
    # The manifest, and the collection an uninterrupted run leaves (tests/integration/conftest.py).
    manifest, expected = uninterrupted.manifest, uninterrupted.points

    # Killed once at least 40% of the calls were made.
    root = tmp_path / "killed"
    proc = subprocess.Popen(
        _args(manifest, root, emulator),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: its Ray goes with it
    )
    tree: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while _calls(emulator) < 0.4 * ASSETS * CHUNKS:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        victim = _victim(proc, target)
        tree = psutil.Process(proc.pid).children(recursive=True)
        victim.send_signal(signal.SIGKILL)
        killed_at = _calls(emulator)
        if target != "driver":
            proc.wait(timeout=240)  # Ray retries the task / restarts the actor, or the run fails
    finally:
        _kill_all(proc, tree)
    _quiet(emulator)
    spent_before = _calls(emulator)
    journaled = _journaled(root)

    # The same command again; nothing kills it, so it runs without the pace that let the first
    # run be killed mid-way (neither the quota nor the decoder's pace is in a vector, payload or
    # fingerprint: see slow_modality.py).
    rerun = subprocess.run(
        _args(manifest, root, emulator, paced=False),
        env=_unpaced_env(),
        capture_output=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr.decode()[-3000:]
    rerun_calls = _calls(emulator) - spent_before
    got = _points(root)
    assert set(got) == set(expected)
    for pid, (vector, payload) in expected.items():
        assert got[pid][1] == payload
        assert np.allclose(got[pid][0], vector, atol=1e-6)
    # The re-run pays exactly for the assets the killed run had not completed (every segment of
    # them, so the calls that were in flight or done for them are paid again), plus its preflight
    # call; nothing the journal holds is paid twice.
    left = ASSETS - journaled
    assert rerun_calls == (1 + CHUNKS * left if left else 0), (rerun_calls, journaled)
    assert killed_at >= 0.4 * ASSETS * CHUNKS
    print(f"{target}: killed at {killed_at} calls, journaled {journaled} assets, "
          f"killed run paid {spent_before}, re-run paid {rerun_calls}")  # fmt: skip
