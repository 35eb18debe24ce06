"""``bedrock.mode=batch`` against the local endpoint: counted at the endpoint, read back from
the collection.

A batch run leaves the collection an on-demand run leaves (ids, payloads, vectors) without a
single ``InvokeModel`` call; a run can exit ``pending`` (7) and a later one collects; a killed run's
job is found, not submitted again; per-record errors are dead letters with the service's code;
jobs that end ``PartiallyCompleted`` or ``Expired`` are handled; records too few for a job go on
demand; the report prices batch assets at the batch table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from nova_devkit.media import make_product_photo
from pipelines.backfill import BackfillResult, run_backfill
from pipelines.config.compose import compose_backfill
from pipelines.stores.qdrant import QdrantStore

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

WORDS = ("amber", "basil", "cedar", "dune", "ember", "fjord", "grove", "heron", "indigo", "jade")


def _text(seed: int, chars: int) -> str:
    out, i = [], seed
    while sum(len(w) + 1 for w in out) < chars:
        out.append(WORDS[i % len(WORDS)] + str(i % 11))
        i += 7
    return " ".join(out)


def _corpus(root: Path, n_texts: int = 6, poison: bool = False) -> Path:
    """Texts of two or three 300-char chunks, and two product photos (generated here)."""
    rows: list[dict[str, Any]] = []
    for i in range(n_texts):
        text = _text(i, 500 + 120 * (i % 3))
        if poison and i == 1:
            text = "POISON " + text
        rows.append({"asset_id": f"note-{i}", "uri": None, "modality": "text", "text": text})
    for i in range(2):
        photo = make_product_photo(root / f"photo-{i}.jpg", seed=i, size=(96, 64))
        rows.append({"asset_id": f"photo-{i}", "uri": str(photo), "modality": "image"})
    path = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _overrides(root: Path, emulator: Endpoints, bucket: str, name: str, *more: str) -> list[str]:
    return [
        "usecase=mixed_media",
        f"manifest={root / 'manifest.parquet'}",
        *emulator.pipeline_overrides(),
        f"bedrock.s3_staging_uri=s3://{bucket}/staging",
        f"qdrant.path={root / name / 'qdrant'}",
        "qdrant.collection=batchy",
        f"run_dir={root / name / 'runs'}",
        f"state.path={root / name / 'state'}",
        "segmentation.text_max_chars=300",
        "segmentation.text_overlap_chars=0",
        "bedrock.batch.min_records_per_job=4",
        "bedrock.batch.poll_min_s=0.2",
        "bedrock.batch.poll_max_s=0.5",
        *more,
    ]


def _run(root: Path, emulator: Endpoints, bucket: str, name: str, *more: str) -> BackfillResult:
    return run_backfill(compose_backfill(_overrides(root, emulator, bucket, name, *more)))


def _batch(root: Path, emulator: Endpoints, bucket: str, name: str, *more: str) -> BackfillResult:
    return _run(
        root, emulator, bucket, name, "bedrock.mode=batch", "bedrock.batch.wait_s=60", *more
    )


def _ops(emulator: Endpoints, op: str) -> int:
    return sum(1 for r in emulator.emulator.requests if r.operation == op and r.status == 200)


def _points(root: Path, name: str) -> dict[str, tuple[dict[str, Any], list[float]]]:
    """Every point of the collection behind the alias: id -> (payload, vector)."""
    import json

    from pipelines.config.schema import EmbeddingConfig, QdrantConfig, SegmentationConfig

    probe = QdrantConfig(path=str(root / name / "qdrant"), collection="batchy")
    with QdrantStore(
        probe, 1024, embedding=EmbeddingConfig(), segmentation=SegmentationConfig()
    ) as s:
        physical = s.resolve_alias("batchy")
    if physical is None:
        return {}
    cfg = QdrantConfig(path=str(root / name / "qdrant"), collection=physical)
    out: dict[str, tuple[dict[str, Any], list[float]]] = {}
    with QdrantStore(
        cfg, 1024, embedding=EmbeddingConfig(), segmentation=SegmentationConfig()
    ) as s:
        if not s.exists():
            return {}
        for table in s.scan(with_vectors=True):
            for r in table.to_pylist():
                out[r["point_id"]] = (json.loads(r["payload_json"]), list(r["vector"]))
    return out


@pytest.fixture
def batch_emulator(emulator: Endpoints) -> Endpoints:
    # The service's minimum is a quota; the pipeline's own minimum is what the tests exercise.
    emulator.emulator.configure(batch_min_records=1, batch_duration_s=0.5)
    return emulator


def test_batch_run_equals_on_demand_run_without_invoke_calls(
    batch_emulator: Endpoints, tmp_path: Path, bucket: str
) -> None:
    from pipelines.estimate import run_estimate

    _corpus(tmp_path)
    on_demand = _run(tmp_path, batch_emulator, bucket, "od")
    assert on_demand.report["status"] == "done" and on_demand.report["embedded"] == 8
    invoke_before = _ops(batch_emulator, "InvokeModel")

    batch = _batch(tmp_path, batch_emulator, bucket, "batch")
    rep = batch.report
    assert (batch.exit_code, rep["status"], rep["embedded"], rep["dead_lettered"]) == (
        0,
        "done",
        8,
        0,
    )
    # Not one InvokeModel call: every record went through the one job.
    assert _ops(batch_emulator, "InvokeModel") == invoke_before
    assert _ops(batch_emulator, "CreateModelInvocationJob") == 1
    assert rep["bedrock_calls"] == 0 and rep["batch"]["jobs_submitted"] == 1
    assert rep["by_path"]["batch"]["embedded"] == 8 and "on_demand" not in rep["by_path"]

    od, bt = _points(tmp_path, "od"), _points(tmp_path, "batch")
    assert set(od) == set(bt) and len(od) == rep["points_written"] > 8
    for pid, (payload, vector) in od.items():
        assert bt[pid][0] == payload
        assert bt[pid][1] == pytest.approx(vector, abs=1e-6)

    # The batch table is half the on-demand one: the report's cost is half the estimate's
    # on-demand cost (both from the characters sent: batch outputs report no tokens).
    est = run_estimate(
        compose_backfill(_overrides(tmp_path, batch_emulator, bucket, "est", "dry_run=true"))
    ).estimate
    assert rep["cost_usd"] == pytest.approx(est["cost_usd"] / 2, rel=1e-6)
    assert est["batch"]["cost_usd"] == pytest.approx(rep["cost_usd"], rel=1e-6)


def test_pending_run_then_a_later_run_collects(
    batch_emulator: Endpoints, tmp_path: Path, bucket: str
) -> None:
    _corpus(tmp_path)
    batch_emulator.emulator.configure(batch_duration_s=3.0)
    first = _batch(tmp_path, batch_emulator, bucket, "b", "bedrock.batch.wait_s=0")
    rep = first.report
    assert (first.exit_code, rep["status"]) == (7, "pending")
    assert (rep["pending"], rep["embedded"], rep["points_written"]) == (8, 0, 0)
    assert rep["batch"]["jobs_pending"] == 1
    assert _points(tmp_path, "b") == {}

    second = _batch(tmp_path, batch_emulator, bucket, "b", "bedrock.batch.wait_s=30")
    rep2 = second.report
    assert (second.exit_code, rep2["status"], rep2["embedded"]) == (0, "done", 8)
    assert rep2["batch"]["jobs_submitted"] == 0 and rep2["batch"]["jobs_collected"] == 1
    assert _ops(batch_emulator, "CreateModelInvocationJob") == 1
    assert len(_points(tmp_path, "b")) == rep2["points_written"]

    # Nothing left: a third run skips everything and submits nothing.
    third = _batch(tmp_path, batch_emulator, bucket, "b").report
    assert (third["skipped_unchanged"], third["batch"]["jobs_submitted"]) == (8, 0)
    assert _ops(batch_emulator, "CreateModelInvocationJob") == 1


JOB = """
import sys
from pipelines.backfill import run_backfill
from pipelines.config.compose import compose_backfill
sys.exit(run_backfill(compose_backfill(sys.argv[1:])).exit_code)
"""


@pytest.mark.slow
def test_killed_run_finds_its_job_instead_of_submitting_again(
    batch_emulator: Endpoints, tmp_path: Path, bucket: str
) -> None:
    _corpus(tmp_path)
    # The job runs for 4 s: the run is killed within a poll (0.2 s) of its submission, long
    # before the job ends, and the next run waits for the rest of those 4 s.
    batch_emulator.emulator.configure(batch_duration_s=4.0)
    args = _overrides(tmp_path, batch_emulator, bucket, "k", "bedrock.mode=batch")
    proc = subprocess.Popen(
        [sys.executable, "-c", JOB, *args, "bedrock.batch.wait_s=120"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while _ops(batch_emulator, "CreateModelInvocationJob") == 0:
            assert proc.poll() is None, "the job ended before submitting"
            assert time.monotonic() < deadline, "no job was submitted"
            time.sleep(0.2)
        # The run is waiting for its job: kill it (and its Ray) for good.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert batch_emulator.emulator.batch.counts().get("Completed", 0) == 0

    again = _batch(tmp_path, batch_emulator, bucket, "k", "bedrock.batch.wait_s=60")
    rep = again.report
    assert (again.exit_code, rep["status"], rep["embedded"]) == (0, "done", 8)
    assert rep["batch"]["jobs_found_not_resubmitted"] == 1 and rep["batch"]["jobs_submitted"] == 0
    assert _ops(batch_emulator, "CreateModelInvocationJob") == 1
    assert _ops(batch_emulator, "InvokeModel") == 0
    assert len(_points(tmp_path, "k")) == rep["points_written"]


def test_record_errors_are_dead_letters_with_the_service_code(
    batch_emulator: Endpoints, tmp_path: Path, bucket: str
) -> None:
    _corpus(tmp_path, poison=True)
    # Output lines in another order than the input's: matched by recordId only.
    batch_emulator.emulator.configure(
        batch_record_errors={"POISON": "400:Malformed input request"}, batch_shuffle_output=True
    )
    result = _batch(tmp_path, batch_emulator, bucket, "e")
    rep = result.report
    assert (rep["status"], rep["embedded"], rep["dead_lettered"]) == ("done", 7, 1)
    dead = pq.read_table(result.dead_letter_path).to_pylist()
    assert {d["asset_id"] for d in dead} == {"note-1"}
    assert dead[0]["error_code"] == "validation_exception"
    assert "errorCode 400" in dead[0]["message"]
    payloads = [p for p, _ in _points(tmp_path, "e").values()]
    assert "note-1" not in {p["asset_id"] for p in payloads}
    assert len(payloads) == rep["points_written"]


def test_partially_completed_job_retried_on_demand(
    batch_emulator: Endpoints, tmp_path: Path, bucket: str
) -> None:
    _corpus(tmp_path)
    batch_emulator.emulator.configure(
        batch_end_status="PartiallyCompleted", batch_partial_fraction=0.5
    )
    dl = _batch(tmp_path, batch_emulator, bucket, "p1")
    rep = dl.report
    assert rep["batch"]["job_states"] and set(rep["batch"]["job_states"].values()) == {
        "PartiallyCompleted"
    }
    assert rep["dead_lettered"] > 0 and rep["embedded"] + rep["dead_lettered"] == 8
    assert set(rep["dead_letters_by_code"]) == {"batch_record_missing"}

    invoke = _ops(batch_emulator, "InvokeModel")
    retried = _batch(
        tmp_path, batch_emulator, bucket, "p2", "bedrock.batch.on_failed_records=on_demand"
    )
    rep2 = retried.report
    assert (rep2["embedded"], rep2["dead_lettered"]) == (8, 0)
    assert rep2["by_path"]["on_demand"]["embedded"] > 0
    assert _ops(batch_emulator, "InvokeModel") > invoke


def test_expired_job_dead_letters_then_next_run_embeds(
    batch_emulator: Endpoints, tmp_path: Path, bucket: str
) -> None:
    _corpus(tmp_path)
    batch_emulator.emulator.configure(batch_end_status="Expired")
    first = _batch(tmp_path, batch_emulator, bucket, "x").report
    assert (first["embedded"], first["dead_lettered"]) == (0, 8)
    assert set(first["dead_letters_by_code"]) == {"batch_job_expired"}
    # Transient: the next run stages the assets again, in a new job.
    batch_emulator.emulator.configure(batch_end_status="auto")
    second = _batch(tmp_path, batch_emulator, bucket, "x").report
    assert (second["embedded"], second["batch"]["jobs_submitted"]) == (8, 1)
    assert _ops(batch_emulator, "CreateModelInvocationJob") == 2


def test_records_too_few_for_a_job_go_on_demand(
    batch_emulator: Endpoints, tmp_path: Path, bucket: str
) -> None:
    _corpus(tmp_path)
    # 18 records; jobs of 10..12 records of whole assets (2 or 3 records each): one job, and the
    # rest (6..8 records) too few for a second one, on demand in the same run.
    result = _batch(
        tmp_path,
        batch_emulator,
        bucket,
        "r",
        "bedrock.batch.min_records_per_job=10",
        "bedrock.batch.max_records_per_job=12",
    )
    rep = result.report
    assert (rep["status"], rep["embedded"]) == ("done", 8)
    assert rep["batch"]["jobs_submitted"] == 1 and rep["batch"]["assets_sent_on_demand"] > 0
    paths = rep["by_path"]
    assert paths["batch"]["embedded"] + paths["on_demand"]["embedded"] == 8
    # On-demand calls: the remainder's segments and the preflight's one (in the report's count).
    assert _ops(batch_emulator, "InvokeModel") == rep["bedrock_calls"]
    assert rep["bedrock_calls"] == paths["on_demand"]["segments"] + rep["preflight_calls"]


def test_the_demo_corpus_by_batch_equals_its_on_demand_run(
    batch_emulator: Endpoints, tmp_path: Path, bucket: str
) -> None:
    """The demo's own corpus (texts, photos, PDFs, audio, video, a broken file) through both
    paths: the same collection, and no InvokeModel call for what went by batch."""
    from nova_devkit.demo import build_corpus

    manifest, _ = build_corpus(tmp_path / "demo")

    def run(name: str, *more: str) -> BackfillResult:
        overrides = _overrides(tmp_path, batch_emulator, bucket, name, *more)
        overrides = [o for o in overrides if not o.startswith(("manifest=", "segmentation."))]
        return run_backfill(compose_backfill([*overrides, f"manifest={manifest}"]))

    on_demand = run("od")
    assert on_demand.report["status"] == "done"
    invoke_before = _ops(batch_emulator, "InvokeModel")
    batch = run("batch", "bedrock.mode=batch", "bedrock.batch.wait_s=120")
    rep = batch.report
    assert (batch.exit_code, rep["status"]) == (0, "done"), rep
    assert (rep["embedded"], rep["dead_lettered"]) == (
        on_demand.report["embedded"],
        on_demand.report["dead_lettered"],
    )
    # No InvokeModel call at all: every asset went by batch (its preflight checks batch access).
    assert _ops(batch_emulator, "InvokeModel") - invoke_before == 0
    assert rep["batch"]["records_collected"] == on_demand.report["bedrock_calls"] - 1
    od, by_batch = _points(tmp_path, "od"), _points(tmp_path, "batch")
    assert od.keys() == by_batch.keys() and od
    for point_id, (payload, vector) in od.items():
        other_payload, other_vector = by_batch[point_id]
        assert other_payload == payload
        assert other_vector == pytest.approx(vector, abs=1e-6)
