"""S3 faults mid-run, injected by a proxy in front of the local S3 (``nova_devkit.emulator.
s3_faults``): one object refused is that asset's dead letter; refusals in a row trip the circuit
breaker and an outage stops the run, both as infrastructure failures (aborted, exit 3), with the
assets not read left pending for the next run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nova_devkit.emulator.launch import Endpoints
from nova_devkit.emulator.s3_faults import S3FaultProxy
from nova_devkit.media import make_product_photo
from tests.faults.wire_harness import (
    SECRET_VALUES,
    check_run,
    dead_codes,
    run_job,
    text_of,
    write_manifest,
)

pytestmark = [pytest.mark.integration]

PHOTOS = 8
BUCKET = "fault-corpus"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def proxy(wire: Endpoints) -> Iterator[S3FaultProxy]:
    with S3FaultProxy(wire.s3_url) as p:
        yield p


def _corpus(root: Path, eps: Endpoints) -> int:
    s3 = eps.s3_client()
    s3.create_bucket(Bucket=BUCKET)
    rows = [{"asset_id": "note", "uri": None, "modality": "text", "text": text_of(0, 200)}]
    for i in range(PHOTOS):
        photo = make_product_photo(root / f"photo-{i}.jpg", seed=i, size=(64, 48))
        s3.put_object(Bucket=BUCKET, Key=f"photo-{i}.jpg", Body=photo.read_bytes())
        rows.append({"asset_id": f"photo-{i}", "uri": f"s3://{BUCKET}/photo-{i}.jpg"})
    rows = [{"modality": "image", "text": None, **r} for r in rows]
    write_manifest(root, rows)
    return len(rows)


def test_one_object_refused_is_that_assets_dead_letter(
    endpoint: Endpoints, proxy: S3FaultProxy, tmp_path: Path
) -> None:
    rows = _corpus(tmp_path, endpoint)
    proxy.set("AccessDenied", keys=["photo-3.jpg"])
    result = run_job(tmp_path, endpoint, s3_url=proxy.url)
    held = check_run(result, tmp_path, rows, exit_code=0)
    assert dead_codes(result) == {"source_access_denied": 1}
    assert set(held) == {"note"} | {f"photo-{i}" for i in range(PHOTOS) if i != 3}


def test_access_refused_mid_run_trips_the_breaker_and_aborts(
    endpoint: Endpoints, proxy: S3FaultProxy, tmp_path: Path
) -> None:
    rows = _corpus(tmp_path, endpoint)
    proxy.set("AccessDenied", after=4)  # two objects read (HEAD + GET each), then 403s
    result = run_job(tmp_path, endpoint, s3_url=proxy.url)
    check_run(result, tmp_path, rows, exit_code=3)
    rep = result.report
    assert rep["status"] == "aborted" and "in a row" in rep["abort_reason"]
    # At most threshold - 1 refusals per decoder process before the breaker trips (two here).
    assert set(dead_codes(result)) <= {"source_access_denied"}
    assert rep["dead_lettered"] <= 4 and rep["pending"] >= 1
    assert proxy.faulted >= 3


def test_an_s3_outage_mid_run_is_an_infrastructure_abort_with_exit_code_3(
    endpoint: Endpoints, proxy: S3FaultProxy, tmp_path: Path
) -> None:
    """The job as a scheduler runs it (a process, its exit code), and no secret in its output."""
    rows = _corpus(tmp_path, endpoint)
    proxy.set("Outage", after=4)
    overrides = [o for o in endpoint.pipeline_overrides() if "s3_endpoint" not in o]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.backfill",
            "usecase=mixed_media",
            f"manifest={tmp_path / 'manifest.parquet'}",
            *overrides,
            f"bedrock.s3_endpoint_url={proxy.url}",
            f"qdrant.path={tmp_path / 'qdrant'}",
            "qdrant.collection=faults",
            f"run_dir={tmp_path / 'runs'}",
            f"state.path={tmp_path / 'state'}",
            "ray.num_cpus=2",
        ],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out.decode(errors="replace")[-2000:]
    for secret in SECRET_VALUES:
        assert secret.encode() not in out
    import json

    from pipelines.backfill import BackfillResult

    [run_dir] = [p for p in (tmp_path / "runs").glob("*/*") if p.is_dir()]
    report = json.loads((run_dir / "report.json").read_text())
    result = BackfillResult(
        run_dir, run_dir / "report.json", run_dir / "dead_letter.parquet", report, 3
    )
    check_run(result, tmp_path, rows, exit_code=3)
    assert report["status"] == "aborted" and "cannot read" in report["abort_reason"]
    assert report["dead_lettered"] == 0
