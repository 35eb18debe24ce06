"""Scheduled backfills: what a re-run pays for, counted at the local endpoint and in the store.

An unchanged re-run makes no call and decodes nothing; a changed asset costs its own calls and
leaves no stale point; prune removes what left the manifest; a permanent dead letter is not paid
again; parameters that would change the vectors are refused; an infrastructure failure mid-run
ends the run cleanly (``aborted``, exit code 3) and the next run finishes the work.
"""

from __future__ import annotations

import threading
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
from pipelines.core.errors import ConfigError
from pipelines.stores.qdrant import QdrantStore

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


def _text(seed: int, chars: int) -> str:
    out, i = [], seed
    while sum(len(w) + 1 for w in out) < chars:
        out.append(WORDS[i % len(WORDS)] + str(i % 7))
        i += 3
    return " ".join(out)


def _corpus(root: Path, texts: dict[str, str], broken: bool = True) -> Path:
    rows: list[dict[str, Any]] = [
        {"asset_id": a, "uri": None, "modality": "text", "text": t} for a, t in texts.items()
    ]
    for i in range(2):
        photo = make_product_photo(root / f"photo-{i}.jpg", seed=i, size=(96, 64))
        rows.append({"asset_id": f"photo-{i}", "uri": str(photo), "modality": "image"})
    if broken:
        bad = root / "broken.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a whole jpeg")
        rows.append({"asset_id": "broken", "uri": str(bad), "modality": "image"})
    path = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _run(root: Path, emulator: Endpoints, *more: str) -> BackfillResult:
    cfg = compose_backfill(
        [
            "usecase=mixed_media",
            f"manifest={root / 'manifest.parquet'}",
            *emulator.pipeline_overrides(),
            f"qdrant.path={root / 'qdrant'}",
            "qdrant.collection=nightly",
            f"run_dir={root / 'runs'}",
            f"state.path={root / 'state'}",
            "segmentation.text_max_chars=400",
            "segmentation.text_overlap_chars=0",
            *more,
        ]
    )
    return run_backfill(cfg)


def _calls(emulator: Endpoints) -> int:
    return sum(1 for r in emulator.emulator.requests if r.operation == "InvokeModel")


def _store(root: Path) -> QdrantStore:
    from pipelines.config.schema import EmbeddingConfig, QdrantConfig, SegmentationConfig

    cfg = QdrantConfig(path=str(root / "qdrant"), collection="nightly")
    return QdrantStore(cfg, 1024, embedding=EmbeddingConfig(), segmentation=SegmentationConfig())


def test_rerun_pays_only_for_what_changed(emulator: Endpoints, tmp_path: Path) -> None:
    texts = {f"note-{i}": _text(i, 900) for i in range(5)}  # three 400-char chunks each
    _corpus(tmp_path, texts)
    first = _run(tmp_path, emulator)
    rep = first.report
    assert (rep["status"], rep["embedded"], rep["dead_lettered"]) == ("done", 7, 1)
    assert first.exit_code == 0
    calls_first = _calls(emulator)
    assert calls_first == rep["bedrock_calls"] > 7

    # Unchanged: no call, nothing decoded; the broken file is not paid for again.
    second = _run(tmp_path, emulator).report
    assert _calls(emulator) == calls_first
    assert (second["bedrock_calls"], second["decoded"]) == (0, 0)
    assert (second["skipped_unchanged"], second["skipped_dead_letter"]) == (7, 1)

    # One text shrinks to one chunk: one call (and the preflight's), its old three points gone.
    texts["note-2"] = _text(99, 200)
    _corpus(tmp_path, texts)
    third = _run(tmp_path, emulator).report
    assert third["preflight_calls"] == 1
    assert _calls(emulator) - calls_first == 2 == third["bedrock_calls"]
    assert (third["embedded"], third["skipped_unchanged"], third["changed"]) == (1, 6, 1)
    with _store(tmp_path) as store:
        held = store.holdings(["note-2"])["note-2"]
        assert held.points == 1 and len(held.content_versions) == 1
    assert third["count_check"]["ok"]

    # The broken file again only when asked; removed assets pruned only when asked.
    fourth = _run(tmp_path, emulator, "retry_dead_letters=true").report
    assert (fourth["dead_lettered"], fourth["skipped_unchanged"]) == (1, 7)
    del texts["note-4"]
    _corpus(tmp_path, texts)
    fifth = _run(tmp_path, emulator, "prune=true").report
    assert fifth["pruned"] == 1 and fifth["bedrock_calls"] == 0
    with _store(tmp_path) as store:
        assert store.count_by_asset(["note-4", "note-3"]) == {"note-4": 0, "note-3": 3}


def test_parameters_that_change_the_vectors_are_refused(
    emulator: Endpoints, tmp_path: Path
) -> None:
    _corpus(tmp_path, {"note-0": _text(0, 300)}, broken=False)
    _run(tmp_path, emulator)
    with pytest.raises(ConfigError, match=r"jobs\.migrate") as info:
        _run(tmp_path, emulator, "segmentation.text_max_chars=300", "parameters_from=config")
    assert info.value.key == "embedding"
    assert "segmentation.text_max_chars=400" in str(info.value)  # what to put on the command
    # By default a run follows the parameters the collection records: nothing to do.
    followed = _run(tmp_path, emulator, "segmentation.text_max_chars=300").report
    assert followed["skipped_unchanged"] == 3 and followed["bedrock_calls"] == 0
    # The query purpose is not part of the fingerprint: no refusal, nothing to do.
    again = _run(tmp_path, emulator, "embedding.query_purpose=TEXT_RETRIEVAL").report
    assert again["skipped_unchanged"] == 3 and again["bedrock_calls"] == 0


def test_access_refused_mid_run_aborts_cleanly_and_the_rerun_finishes(
    emulator: Endpoints, tmp_path: Path
) -> None:
    texts = {f"note-{i}": _text(i, 900) for i in range(6)}
    _corpus(tmp_path, texts, broken=False)
    # The preflight call and the next 6 succeed, then access is refused for good.
    emulator.emulator.script(["ok"] * 7 + ["AccessDeniedException"] * 200)
    aborted = _run(tmp_path, emulator)
    rep = aborted.report
    assert aborted.exit_code == 3 and rep["status"] == "aborted"
    assert "AccessDenied" in rep["abort_reason"] or "refused" in rep["abort_reason"]
    assert rep["embedded"] + rep["pending"] + rep["dead_lettered"] == 8
    assert aborted.report_path.exists() and aborted.dead_letter_path.exists()
    spent = _calls(emulator)

    emulator.emulator.script([])
    emulator.emulator.reset()
    done = _run(tmp_path, emulator).report
    assert done["status"] == "done" and done["count_check"]["ok"]
    assert done["embedded"] + done["skipped_unchanged"] == 8
    # Only what the aborted run did not finish is paid again (and one preflight call).
    assert done["bedrock_calls"] <= 1 + 6 * 3 + 2 - rep["points_written"]
    assert spent >= 6
    with _store(tmp_path) as store:
        assert sum(store.count_by_asset(list(texts)).values()) == 6 * 3


def test_the_store_failing_mid_run_aborts_cleanly_and_the_rerun_finishes(
    emulator: Endpoints, tmp_path: Path
) -> None:
    import sqlite3

    texts = {f"note-{i}": _text(i, 900) for i in range(8)}
    _corpus(tmp_path, texts, broken=False)
    emulator.emulator.configure(latency={"text": 100.0})
    # The physical collection behind the alias "nightly".
    storage = tmp_path / "qdrant" / "collection" / "nightly_v1" / "storage.sqlite"
    locked = threading.Event()
    release = threading.Event()

    def break_the_store() -> None:
        # Another writer takes the embedded store's file: every write of the run now fails.
        deadline = time.monotonic() + 120
        while _calls(emulator) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        db = sqlite3.connect(storage, timeout=30, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(300)
        db.execute("ROLLBACK")
        db.close()

    breaker = threading.Thread(target=break_the_store, daemon=True)
    breaker.start()
    try:
        aborted = _run(tmp_path, emulator)
    finally:
        release.set()
        breaker.join(30)
    assert locked.is_set()
    rep = aborted.report
    assert aborted.exit_code == 3 and rep["status"] == "aborted"
    assert "store" in rep["abort_reason"]
    assert aborted.report_path.exists() and aborted.dead_letter_path.exists()

    emulator.emulator.reset()
    done = _run(tmp_path, emulator).report
    assert done["status"] == "done" and done["count_check"]["ok"]
    assert done["embedded"] + done["skipped_unchanged"] == 10
    with _store(tmp_path) as store:
        assert sum(store.count_by_asset(list(texts)).values()) == 8 * 3


def test_identical_content_under_two_ids_is_embedded_once(
    emulator: Endpoints, tmp_path: Path
) -> None:
    same = _text(5, 900)
    _corpus(tmp_path, {"note-a": same, "note-b": same, "note-c": _text(6, 300)}, broken=False)
    rep = _run(tmp_path, emulator).report
    assert rep["embedded"] == 5 and rep["count_check"]["ok"]
    # 3 chunks once, 1 chunk, 2 photos, and the preflight call: note-b costs nothing.
    assert rep["bedrock_calls"] == _calls(emulator) == 3 + 1 + 2 + 1
    with _store(tmp_path) as store:
        held = store.holdings(["note-a", "note-b"])
        assert held["note-a"].points == held["note-b"].points == 3
        points = {
            (p["asset_id"], p["segment_index"]): p
            for t in store.scan(with_vectors=True)
            for p in t.to_pylist()
        }
    for k in range(3):
        a, b = points[("note-a", k)], points[("note-b", k)]
        assert a["vector"] == b["vector"] and a["point_id"] != b["point_id"]


def _kill_budget_after(emulator: Endpoints, calls: int, restart: bool) -> threading.Thread:
    import ray

    def kill() -> None:
        deadline = time.monotonic() + 120
        while _calls(emulator) < calls and time.monotonic() < deadline:
            time.sleep(0.05)
        from pipelines.config.schema import NOVA_MME_MODEL_ID
        from pipelines.core.rate_limit import quota_scope

        # The guard is per account (here: the endpoint), region and model, not per collection.
        name = quota_scope(emulator.bedrock_url, emulator.region, NOVA_MME_MODEL_ID)
        actor = ray.get_actor(name, namespace="nova-embed-pipelines")
        ray.kill(actor, no_restart=not restart)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("restart", [True, False])
def test_a_lost_rate_budget_is_restarted_or_created_again(
    restart: bool, emulator: Endpoints, tmp_path: Path
) -> None:
    texts = {f"note-{i}": _text(i, 900) for i in range(8)}
    _corpus(tmp_path, texts, broken=False)
    emulator.emulator.configure(latency={"text": 100.0})
    killer = _kill_budget_after(emulator, 8, restart)
    result = _run(tmp_path, emulator)
    killer.join(30)
    # Ray restarted the guard (restart) or the next caller created it again from its saved
    # state (killed for good): the run went on and finished either way.
    assert result.exit_code == 0 and result.report["embedded"] == 10


def test_verify_embeds_again_what_the_store_lost(emulator: Endpoints, tmp_path: Path) -> None:
    texts = {f"note-{i}": _text(i, 900) for i in range(3)}
    _corpus(tmp_path, texts, broken=False)
    _run(tmp_path, emulator)
    with _store(tmp_path) as store:
        store.delete_assets(["note-1"])  # behind the journal's back
    before = _calls(emulator)
    plain = _run(tmp_path, emulator).report
    assert plain["bedrock_calls"] == 0  # the journal alone cannot know
    verified = _run(tmp_path, emulator, "verify=true").report
    assert (verified["embedded"], verified["skipped_unchanged"]) == (1, 4)
    assert _calls(emulator) - before == verified["bedrock_calls"] == 3 + 1  # its chunks + preflight
    with _store(tmp_path) as store:
        assert store.count_by_asset(["note-1"]) == {"note-1": 3}


def test_s3_unreachable_stops_the_run_instead_of_dead_lettering_every_row(
    emulator: Endpoints, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    rows = [{"asset_id": "note-0", "uri": None, "text": _text(0, 300), "content_version": "v1"}]
    rows += [
        {"asset_id": f"photo-{i}", "uri": f"s3://corpus/photo-{i}.jpg", "text": None,
         "content_version": "v1"}
        for i in range(3)
    ]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifest.parquet")
    result = _run(tmp_path, emulator, f"bedrock.s3_endpoint_url=http://127.0.0.1:{dead}")
    rep = result.report
    assert result.exit_code == 3 and rep["status"] == "aborted"
    assert "cannot read" in rep["abort_reason"] and "photo-" in rep["abort_reason"]
    assert rep["dead_lettered"] == 0  # nothing blamed on the assets


def test_an_async_job_a_killed_run_started_is_reused_not_paid_twice(
    emulator: Endpoints, tmp_path: Path, bucket: str
) -> None:
    from pipelines.core.manifest import load_manifest
    from pipelines.stages.embed_service import ServiceSegmentEmbedder

    rows = [
        {"asset_id": f"note-{i}", "text": _text(i, 1800), "content_version": "v1"} for i in range(3)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifest.parquet")
    service = [
        "usecase.modalities=[text]",
        "segmentation.mode=service",
        "segmentation.service_max_chars=800",
        f"bedrock.s3_staging_uri=s3://{bucket}/staging",
        "bedrock.async_poll_min_s=0.1",
        "bedrock.async_poll_max_s=0.5",
        # No StartAsyncInvoke quota at the local endpoint: the pipeline's default of 60 starts
        # a minute would pace this run (test_backfill.py's service run: 21 s, unpaced 6 s).
        "bedrock.quota.async_requests_per_minute=6000",
    ]
    cfg = compose_backfill(
        [*emulator.pipeline_overrides(), *service, f"manifest={tmp_path / 'manifest.parquet'}"]
    )
    # What a killed run left behind: the async job of note-1, started and never collected.
    asset = load_manifest(str(tmp_path / "manifest.parquet")).to_pylist()[1]
    killed = ServiceSegmentEmbedder(cfg.embedding, cfg.segmentation, cfg.bedrock)
    assert not any(r.get("error_code") for r in killed.embed_asset(asset))

    rep = _run(tmp_path, emulator, *service).report
    assert rep["embedded"] == 3 and rep["count_check"]["ok"]
    # Four starts reached the endpoint (the killed run's and the run's three), but only three
    # jobs exist: the run's start of note-1 got the job the killed run had started.
    starts = [r for r in emulator.emulator.requests if r.operation == "StartAsyncInvoke"]
    assert len(starts) == 4
    jobs = emulator.bedrock_runtime_client().list_async_invokes()["asyncInvokeSummaries"]
    assert len({j["invocationArn"] for j in jobs}) == 3


def test_a_killed_runs_async_jobs_are_on_record_and_the_next_run_gets_them_back(
    emulator: Endpoints, tmp_path: Path, bucket: str
) -> None:
    import os
    import signal
    import sqlite3
    import subprocess
    import sys

    rows = [{"asset_id": f"note-{i}", "text": _text(i, 600)} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifest.parquet")
    service = [
        "usecase.modalities=[text]",
        "segmentation.mode=service",
        f"bedrock.s3_staging_uri=s3://{bucket}/staging",
        "bedrock.async_poll_min_s=0.2",
        "bedrock.async_poll_max_s=0.5",
    ]
    # Jobs stay in progress long enough for the driver to put them on record, then it dies.
    emulator.emulator.configure(async_min_duration_s=6.0)
    overrides = [
        "usecase=mixed_media",
        f"manifest={tmp_path / 'manifest.parquet'}",
        *emulator.pipeline_overrides(),
        f"qdrant.path={tmp_path / 'qdrant'}",
        "qdrant.collection=nightly",
        f"run_dir={tmp_path / 'runs'}",
        f"state.path={tmp_path / 'state'}",
        "ray.num_cpus=2",
        *service,
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.backfill", *overrides],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    journal = tmp_path / "state" / "journal.sqlite"

    def on_record() -> list[tuple[str, str, str]]:
        if not journal.exists():
            return []
        db = sqlite3.connect(journal)
        try:
            return db.execute(
                "SELECT asset_id, arn, status FROM invocations WHERE status = 'in_progress'"
            ).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    try:
        deadline = time.monotonic() + 180
        while len(on_record()) < 2:
            assert proc.poll() is None, "the run ended before its jobs were on record"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    recorded = on_record()
    started = {
        j["invocationArn"]
        for j in emulator.bedrock_runtime_client().list_async_invokes()["asyncInvokeSummaries"]
    }
    assert {arn for _, arn, _ in recorded} <= started

    emulator.emulator.configure(async_min_duration_s=0.2)
    rep = _run(tmp_path, emulator, *service).report
    # What the killed run finished and journaled is unchanged; the rest is embedded now.
    assert rep["embedded"] + rep["skipped_unchanged"] == 4 and rep["count_check"]["ok"]
    assert rep["async_jobs_left_in_flight"] == len(recorded)
    jobs = emulator.bedrock_runtime_client().list_async_invokes()["asyncInvokeSummaries"]
    # One job per asset in all: the recorded ones were got back by their tokens, not paid again.
    assert len({j["invocationArn"] for j in jobs}) == 4
    assert on_record() == []
