"""One quota guard per account, region and model, shared by every job on the cluster.

- Two backfills at once on one Ray head (``ray start --head`` here), into two collections,
  against one endpoint quota Q: together they stay under it (the endpoint counts the throttles).
- The guard actor killed (SIGKILL) in the middle of a run: Ray restarts it with what it had
  learned and counted, and the run completes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from pipelines.config.compose import compose_backfill
from pipelines.core.rate_limit import BUDGET_NAMESPACE, guard_name

pytestmark = [pytest.mark.integration]


def _manifest(path: Path, tag: str, rows: int) -> Path:
    table = [
        {"asset_id": f"{tag}-{i:04d}", "modality": "text", "text": f"{tag} note {i}: lorem ipsum"}
        for i in range(rows)
    ]
    pq.write_table(pa.Table.from_pylist(table), path)
    return path


def _invokes(emulator: Endpoints) -> list[Any]:
    return [r for r in emulator.emulator.requests if r.operation == "InvokeModel"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_jobs_on_one_head_share_one_quota(emulator: Endpoints, tmp_path: Path) -> None:
    from nova_devkit.cluster import ray_head, start_job, wait_jobs

    # 200 rows a job: ~20 s of calls alone at the quota, so the two overlap even when one job's
    # start-up lags the other's by ~15 s on a busy machine (120 rows, ~12 s, once did not).
    quota, rows = 600.0, 200
    emulator.emulator.configure(
        quota={"requests_per_minute": quota}, latency_ms=100.0, jitter_ms=200.0
    )
    jobs = []
    with ray_head(num_cpus=2) as head:
        for tag in ("alpha", "beta"):
            overrides = [
                "usecase=text_retrieval",
                f"manifest={_manifest(tmp_path / f'{tag}.parquet', tag, rows)}",
                *emulator.pipeline_overrides(),
                # Each job is told the account's quota: the guard they share keeps both under it.
                f"bedrock.quota.requests_per_minute={quota}",
                f"qdrant.collection=quota_{tag}",
                f"qdrant.path={tmp_path / ('qdrant-' + tag)}",
                f"run_dir={tmp_path / 'runs'}",
                f"state.path={tmp_path / ('state-' + tag)}",
            ]
            jobs.append(start_job(head, overrides, tmp_path / f"{tag}.log"))
        codes = wait_jobs(jobs, timeout_s=600)
    logs = {tag: (tmp_path / f"{tag}.log").read_text() for tag in ("alpha", "beta")}
    assert codes == [0, 0], {t: log[-3000:] for t, log in logs.items()}
    reports = {}
    for tag, log in logs.items():
        path = re.findall(r"report:\s+(\S+)", log)[-1]
        reports[tag] = json.loads(Path(path).read_text())
        assert reports[tag]["embedded"] == rows
        assert reports[tag]["count_check"]["ok"]
    # One guard for both: the same name (account/endpoint, region, model), not per collection.
    assert reports["alpha"]["rate_budget"]["guard"] == reports["beta"]["rate_budget"]["guard"]
    calls = _invokes(emulator)
    throttled = [r for r in calls if r.error_code == "ThrottlingException"]
    # Each job alone would send Q: two budgets would send 2Q and see about half throttled.
    assert len(throttled) <= 0.03 * len(calls), (len(throttled), len(calls))
    # The two jobs ran at the same time (their calls interleave).
    t = {
        tag: [r.timestamp for r in calls if r.status == 200 and tag in str(r.body)]
        for tag in ("alpha", "beta")
    }
    if all(t.values()):
        assert min(t["alpha"]) < max(t["beta"]) and min(t["beta"]) < max(t["alpha"])


@pytest.mark.usefixtures("ray_session")
def test_guard_restarted_keeps_what_it_learned() -> None:
    import ray

    from pipelines.core.rate_limit import GuardHandle, RateBudgetSettings

    handle = GuardHandle("test-guard-restart", RateBudgetSettings(600, 1e9), timeout_s=30)
    actor = handle.attach()
    handle.ask("open_run", "run-1", 10, None)
    for _ in range(3):
        handle.ask("reserve", 1, "run-1", 0.0)
    for _ in range(20):
        handle.ask("report", 1, 0)
    handle.ask("report", 0, 1)  # a throttle: the allowed rate drops
    before = handle.ask("snapshot")
    assert before["fraction"] < 1.0
    os.kill(int(ray.get(actor.pid.remote())), signal.SIGKILL)
    after = handle.ask("snapshot")  # waits for Ray's restart
    assert after["restarts"] == 1
    assert after["fraction"] == pytest.approx(before["fraction"])
    assert handle.ask("run_account", "run-1")["calls"] == 3
    # Killed for good (no restart): the next caller creates it again from the saved state.
    ray.kill(ray.get_actor("test-guard-restart", namespace=BUDGET_NAMESPACE), no_restart=True)
    deadline = time.monotonic() + 30
    while True:  # until Ray no longer knows it by its name
        try:
            ray.get_actor("test-guard-restart", namespace=BUDGET_NAMESPACE)
        except ValueError:
            break
        assert time.monotonic() < deadline, "the killed guard is still known by its name"
        time.sleep(0.05)
    again = GuardHandle("test-guard-restart", RateBudgetSettings(600, 1e9), timeout_s=30)
    assert again.ask("snapshot")["fraction"] == pytest.approx(before["fraction"])
    assert again.ask("run_account", "run-1")["calls"] == 3


@pytest.mark.usefixtures("ray_session")
def test_run_completes_when_the_guard_is_killed_mid_run(
    emulator: Endpoints, tmp_path: Path
) -> None:
    import ray

    from pipelines.backfill import run_backfill

    rows = 80
    emulator.emulator.configure(quota={"requests_per_minute": 400.0}, latency_ms=50.0)
    cfg = compose_backfill(
        [
            "usecase=text_retrieval",
            f"manifest={_manifest(tmp_path / 'm.parquet', 'kill', rows)}",
            *emulator.pipeline_overrides(),
            "bedrock.quota.requests_per_minute=400",
            "qdrant.collection=quota_kill",
            f"qdrant.path={tmp_path / 'qdrant'}",
            f"run_dir={tmp_path / 'runs'}",
            f"state.path={tmp_path / 'state'}",
        ]
    )
    name = guard_name(cfg.bedrock, cfg.embedding.model_id)
    killed: list[int] = []

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(_invokes(emulator)) < rows // 3:
            time.sleep(0.1)
        actor: Any = ray.get_actor(name, namespace=BUDGET_NAMESPACE)
        pid: int = ray.get(actor.pid.remote(), timeout=30)
        os.kill(pid, signal.SIGKILL)
        killed.append(len(_invokes(emulator)))

    killer = threading.Thread(target=kill_when_busy, daemon=True)
    killer.start()
    result = run_backfill(cfg)
    killer.join(timeout=5)
    assert killed and killed[0] < rows, killed
    assert result.exit_code == 0, result.report
    assert result.report["embedded"] == rows
    assert result.report["count_check"]["ok"]
    assert result.report["rate_budget"]["restarts"] >= 1
    ok = [r for r in _invokes(emulator) if r.status == 200]
    assert len(ok) == rows + 1  # every asset once, and the preflight


@pytest.mark.usefixtures("ray_session")
def test_a_guard_that_does_not_answer_stops_the_run_before_any_unpaced_call(
    emulator: Endpoints, tmp_path: Path
) -> None:
    import ray

    from pipelines.backfill import run_backfill

    cfg = compose_backfill(
        [
            "usecase=text_retrieval",
            f"manifest={_manifest(tmp_path / 'm.parquet', 'mute', 6)}",
            *emulator.pipeline_overrides(),
            "bedrock.quota.guard_timeout_s=2",
            "bedrock.quota.account=mute-guard-test",
            "qdrant.collection=quota_mute",
            f"qdrant.path={tmp_path / 'qdrant'}",
            f"run_dir={tmp_path / 'runs'}",
            f"state.path={tmp_path / 'state'}",
        ]
    )

    @ray.remote(num_cpus=0)
    class Mute:
        """Holds the guard's name and never answers (a guard that cannot be restarted)."""

        def attach(self, *args: Any) -> None:
            time.sleep(3600)

    squatter = Mute.options(  # type: ignore[attr-defined]
        name=guard_name(cfg.bedrock, cfg.embedding.model_id),
        namespace=BUDGET_NAMESPACE,
        max_concurrency=4,
    ).remote()
    try:
        result = run_backfill(cfg)
    finally:
        ray.kill(squatter)
    assert (result.exit_code, result.report["status"]) == (3, "aborted")
    assert "quota guard" in result.report["abort_reason"]
    # Only the preflight's call went out: nothing unpaced.
    assert len([r for r in _invokes(emulator) if r.status == 200]) == 1
    assert result.report["pending"] == 6
