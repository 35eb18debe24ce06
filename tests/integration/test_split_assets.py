"""A large asset decoded in parts: every segment once, the asset still the unit of completion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from nova_devkit.media.docs import make_pdf
from pipelines.backfill import run_backfill
from pipelines.config.compose import compose_backfill

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


def test_a_split_pdf_is_embedded_once_per_page_and_counted_complete(
    emulator: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.core.plan as plan
    import pipelines.modalities.base as base

    # The test's PDFs are small: let any asset over the block goal be split (planning runs in
    # this process, so the patch applies where the parts are decided).
    monkeypatch.setattr(base, "MIN_PART_WORK", 1)
    seen: list[pa.Table] = []
    cut = plan.asset_blocks

    def recording(table: pa.Table, cpus: int, seg: Any = None) -> list[pa.Table]:
        blocks = cut(table, cpus, seg)
        seen.extend(blocks)
        return blocks

    monkeypatch.setattr(plan, "asset_blocks", recording)
    big = make_pdf(tmp_path / "big.pdf", pages=12, seed=3)
    small = [make_pdf(tmp_path / f"s{i}.pdf", pages=1, seed=10 + i) for i in range(3)]
    rows = [{"asset_id": "big", "uri": str(big), "modality": "document"}] + [
        {"asset_id": f"s{i}", "uri": str(p), "modality": "document"} for i, p in enumerate(small)
    ]
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    job = compose_backfill(
        [
            "usecase=document_retrieval",
            f"manifest={manifest}",
            *emulator.pipeline_overrides(),
            f"qdrant.path={tmp_path / 'qdrant'}",
            f"run_dir={tmp_path / 'runs'}",
            f"state.path={tmp_path / 'state'}",
        ]
    )
    result = run_backfill(job)

    parts = [
        p
        for b in seen
        for a, p in zip(b["asset_id"].to_pylist(), b["part"].to_pylist(), strict=True)
        if a == "big"
    ]
    assert len(parts) > 1 and all(parts), parts
    rep = result.report
    assert rep["embedded"] == 4 and rep["dead_lettered"] == 0
    # One call per page, no page twice: the parts split the pages between them.
    sent = [r for r in emulator.emulator.requests if r.operation == "InvokeModel"]
    assert len(sent) == rep["bedrock_calls"]
    images = [r for r in sent if "image" in r.body["singleEmbeddingParams"]]
    assert len(images) == 12 + 3  # the other call is the preflight's
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        points, _ = client.scroll(job.qdrant.collection, limit=100, with_payload=True)
    finally:
        client.close()
    held = [dict(p.payload or {}) for p in points]
    big_points = [p for p in held if p["asset_id"] == "big"]
    assert sorted(p["page"] for p in big_points) == list(range(1, 13))
    assert {p["segment_count"] for p in big_points} == {12}


def test_a_split_recording_is_embedded_once_per_window_and_counted_complete(
    emulator: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.core.plan as plan
    import pipelines.modalities.base as base
    from nova_devkit.media.av import make_tone_audio

    monkeypatch.setattr(base, "MIN_PART_WORK", 1)
    seen: list[pa.Table] = []
    cut = plan.asset_blocks

    def recording(table: pa.Table, cpus: int, seg: Any = None) -> list[pa.Table]:
        blocks = cut(table, cpus, seg)
        seen.extend(blocks)
        return blocks

    monkeypatch.setattr(plan, "asset_blocks", recording)
    long = make_tone_audio(tmp_path / "long.mp3", 95.0, kind="music", seed=5)
    short = [make_tone_audio(tmp_path / f"s{i}.mp3", 4.0, seed=20 + i) for i in range(3)]
    rows = [{"asset_id": "long", "uri": str(long), "modality": "audio"}] + [
        {"asset_id": f"s{i}", "uri": str(p), "modality": "audio"} for i, p in enumerate(short)
    ]
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    job = compose_backfill(
        [
            "usecase=audio_fingerprinting",
            f"manifest={manifest}",
            *emulator.pipeline_overrides(),
            "segmentation.audio_window_s=10",
            "segmentation.audio_overlap_s=0",
            f"qdrant.path={tmp_path / 'qdrant'}",
            f"run_dir={tmp_path / 'runs'}",
            f"state.path={tmp_path / 'state'}",
        ]
    )
    result = run_backfill(job)

    parts = [
        p
        for b in seen
        for a, p in zip(b["asset_id"].to_pylist(), b["part"].to_pylist(), strict=True)
        if a == "long"
    ]
    assert len(parts) > 1 and all(parts), parts
    rep = result.report
    assert rep["embedded"] == 4 and rep["dead_lettered"] == 0
    sent = [r for r in emulator.emulator.requests if r.operation == "InvokeModel"]
    audio = [r for r in sent if "audio" in r.body["singleEmbeddingParams"]]
    assert len(audio) == 10 + 3  # ten 10 s windows of the long one, one each for the others
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        points, _ = client.scroll(job.qdrant.collection, limit=100, with_payload=True)
    finally:
        client.close()
    held = [dict(p.payload or {}) for p in points if (p.payload or {}).get("asset_id") == "long"]
    assert sorted(p["segment_index"] for p in held) == list(range(10))
    assert sorted(p["start_s"] for p in held) == [10.0 * k for k in range(10)]
