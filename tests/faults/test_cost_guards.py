"""Cost guards: run limits (``limits.max_calls``, ``limits.max_usd``) stop the run cleanly and
resumably, and per-asset limits dead-letter an asset before any call for it.

Every figure is counted at the local endpoint (its request records) or read back from the
collection, never from the pipeline's own counters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from pipelines.backfill import run_backfill
from pipelines.config.compose import compose_backfill
from pipelines.core import codes

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

ROWS = 24


def _invokes(emulator: Endpoints) -> int:
    return sum(1 for r in emulator.emulator.requests if r.operation == "InvokeModel")


def _texts(root: Path, rows: int = ROWS) -> Path:
    table = [
        {"asset_id": f"t-{i:03d}", "modality": "text", "text": f"note {i}: the quick brown fox"}
        for i in range(rows)
    ]
    path = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(table), path)
    return path


def _cfg(manifest: Path, emulator: Endpoints, tmp: Path, *more: str) -> Any:
    return compose_backfill(
        [
            "usecase=text_retrieval",
            f"manifest={manifest}",
            *emulator.pipeline_overrides(),
            "bedrock.base_backoff_s=0.05",
            "qdrant.collection=cost_guard",
            f"qdrant.path={tmp / 'qdrant'}",
            f"run_dir={tmp / 'runs'}",
            f"state.path={tmp / 'state'}",
            # Small batches: calls go out a few at a time, as on a long run.
            "resources.embed.max_in_flight=2",
            *more,
        ]
    )


def _points_by_asset(path: Path, collection: str) -> dict[str, int]:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(path))
    try:
        points, _ = client.scroll(collection, limit=10_000, with_payload=True, with_vectors=False)
    finally:
        client.close()
    out: dict[str, int] = {}
    for p in points:
        asset = str((p.payload or {}).get("asset_id"))
        out[asset] = out.get(asset, 0) + 1
    return out


@pytest.mark.parametrize("limit", ["max_calls", "max_usd"])
def test_run_limit_stops_cleanly_and_the_next_run_resumes(
    limit: str, emulator: Endpoints, tmp_path: Path
) -> None:
    manifest = _texts(tmp_path)
    n = 7
    if limit == "max_calls":
        setting = f"limits.max_calls={n}"
    else:
        # Seven calls' worth of dollars by the text cost rule (chars / 4 tokens, estimated).
        from pipelines.config.schema import PricesConfig

        tokens = len("note 10: the quick brown fox") / 4
        per_call = tokens / 1000 * PricesConfig().text_per_1k_tokens
        setting = f"limits.max_usd={per_call * (n + 0.5):.12f}"
    first = run_backfill(_cfg(manifest, emulator, tmp_path, setting))
    calls_first = _invokes(emulator)
    # The preflight's one test call is not counted against the limit (documented).
    assert calls_first <= n + 1 + (1 if limit == "max_usd" else 0), calls_first
    assert calls_first >= 2
    assert first.exit_code == 4
    report = json.loads(first.report_path.read_text())
    assert report["status"] == "stopped"
    assert f"limits.{limit}" in report["stop_reason"]
    assert report["embedded"] + report["pending"] + report["dead_lettered"] == ROWS
    assert report["embedded"] < ROWS
    held = _points_by_asset(tmp_path / "qdrant", "cost_guard")
    # No partial asset: what is in the store is what the report calls embedded.
    assert len(held) == report["embedded"]

    emulator.emulator.reset()
    second = run_backfill(_cfg(manifest, emulator, tmp_path))
    assert second.exit_code == 0, second.report
    assert second.report["skipped_unchanged"] == report["embedded"]
    # Only what was not done is paid for again (plus the preflight).
    assert _invokes(emulator) <= ROWS - report["embedded"] + 1
    assert len(_points_by_asset(tmp_path / "qdrant", "cost_guard")) == ROWS


def _pdf(path: Path, pages: int) -> Path:
    import pymupdf

    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=200, height=200)
        page.insert_text((20, 50), f"page {i + 1}")
    doc.save(str(path))
    doc.close()
    return path


def test_per_asset_limits_dead_letter_before_any_call(
    emulator: Endpoints, media: Any, tmp_path: Path
) -> None:
    big_pdf = _pdf(tmp_path / "big.pdf", 5)
    small_pdf = _pdf(tmp_path / "small.pdf", 2)
    long_wav = tmp_path / "long.wav"
    long_wav.write_bytes(media.audio(((12.0, (440.0,)),)))
    short_wav = tmp_path / "short.wav"
    short_wav.write_bytes(media.audio(((2.0, (330.0,)),)))
    rows = [
        {"asset_id": "big-pdf", "uri": str(big_pdf), "modality": "document", "text": None},
        {"asset_id": "small-pdf", "uri": str(small_pdf), "modality": "document", "text": None},
        {"asset_id": "long-wav", "uri": str(long_wav), "modality": "audio", "text": None},
        {"asset_id": "short-wav", "uri": str(short_wav), "modality": "audio", "text": None},
        {"asset_id": "long-text", "uri": None, "modality": "text", "text": "x" * 700_000},
        {"asset_id": "short-text", "uri": None, "modality": "text", "text": "a short note"},
    ]
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    cfg = compose_backfill(
        [
            "usecase=mixed_media",
            f"manifest={manifest}",
            *emulator.pipeline_overrides(),
            "qdrant.collection=asset_limits",
            f"qdrant.path={tmp_path / 'qdrant'}",
            f"run_dir={tmp_path / 'runs'}",
            f"state.path={tmp_path / 'state'}",
            "segmentation.audio_window_s=5",
            "limits.max_pages_per_asset=3",
            "limits.max_media_seconds_per_asset=10",
            "limits.max_bytes_per_asset=600000",  # the 12 s WAV is 384 kB
        ]
    )
    result = run_backfill(cfg)
    assert result.exit_code == 0, result.report
    dead = pq.read_table(result.dead_letter_path).to_pylist()
    by_asset = {r["asset_id"]: r["error_code"] for r in dead}
    assert by_asset == {
        "big-pdf": codes.ASSET_TOO_MANY_PAGES,
        "long-wav": codes.ASSET_TOO_LONG,
        "long-text": codes.ASSET_TOO_LARGE,
    }, dead
    # Calls at the endpoint: the preflight, two pages, one audio segment and one text; none for
    # the three assets over a limit.
    assert _invokes(emulator) == 1 + 2 + 1 + 1
    held = _points_by_asset(tmp_path / "qdrant", "asset_limits")
    assert set(held) == {"small-pdf", "short-wav", "short-text"}


def test_segment_limit_counts_segments_before_the_calls(
    emulator: Endpoints, tmp_path: Path
) -> None:
    rows = [
        {"asset_id": "long", "modality": "text", "text": "word " * 3000},  # 3 chunks of 6000
        {"asset_id": "short", "modality": "text", "text": "a short note"},
    ]
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    result = run_backfill(_cfg(manifest, emulator, tmp_path, "limits.max_segments_per_asset=2"))
    assert result.exit_code == 0
    dead = pq.read_table(result.dead_letter_path).to_pylist()
    assert [(r["asset_id"], r["error_code"]) for r in dead] == [
        ("long", codes.ASSET_TOO_MANY_SEGMENTS)
    ]
    assert _invokes(emulator) == 1 + 1
