"""``usecase.partial_assets``: all-or-nothing assets (``drop``) or their good segments kept
(``keep``), and what the next run does with a partial asset.

A PDF's page is refused at the wire: the local endpoint answers ``ValidationException`` to a
request body over its ``max_body_bytes``, and one page (full-page noise) renders far larger than
the others (a permanent failure). A transient one is a scripted ``InternalServerException`` with
``bedrock.max_attempts=1``. Every figure is read back from the collection, counted at the
endpoint, or read from the run's report and dead-letter file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from pipelines.backfill import BackfillResult, run_backfill
from pipelines.config.compose import compose_backfill
from pipelines.core import codes
from pipelines.core.ledger import OUTCOMES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

# Text pages render to a few kB; the noise page to about half a MB (base64: more).
BODY_LIMIT = 150_000
NOISY_PAGE = 1  # segment_index of the refused page (page 2)


def _pdf(path: Path, pages: int = 3, noisy: int | None = None) -> Path:
    import pymupdf
    from PIL import Image

    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=200, height=200)
        page.insert_text((20, 50), f"page {i + 1} of the quarterly report")
        if i == noisy:
            noise = np.random.default_rng(i).integers(0, 256, (400, 400, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(noise).save(buf, format="PNG")
            page.insert_image(page.rect, stream=buf.getvalue())
    doc.save(str(path))
    doc.close()
    return path


def _manifest(root: Path, rows: list[dict[str, Any]]) -> None:
    pq.write_table(pa.Table.from_pylist(rows), root / "manifest.parquet")


def _report_row(pdf: Path) -> dict[str, Any]:
    return {"asset_id": "report", "uri": str(pdf), "modality": "document", "text": None}


def _note(text: str) -> dict[str, Any]:
    return {"asset_id": "note", "uri": None, "modality": "text", "text": text}


def _run(root: Path, emulator: Endpoints, *more: str) -> BackfillResult:
    cfg = compose_backfill(
        [
            "usecase=mixed_media",
            f"manifest={root / 'manifest.parquet'}",
            *emulator.pipeline_overrides(),
            "bedrock.base_backoff_s=0.01",
            "bedrock.max_backoff_s=0.05",
            "qdrant.collection=partial",
            f"qdrant.path={root / 'qdrant'}",
            f"run_dir={root / 'runs'}",
            f"state.path={root / 'state'}",
            *more,
        ]
    )
    return run_backfill(cfg)


def _invokes(emulator: Endpoints) -> int:
    return sum(1 for r in emulator.emulator.requests if r.operation == "InvokeModel")


def _segments(root: Path) -> dict[str, set[int]]:
    """The collection read back: segment indices by asset id."""
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(root / "qdrant"))
    try:
        points, _ = client.scroll("partial", limit=10_000, with_payload=True)
    finally:
        client.close()
    out: dict[str, set[int]] = {}
    for p in points:
        payload = p.payload or {}
        out.setdefault(str(payload["asset_id"]), set()).add(int(payload["segment_index"]))
    return out


def _dead(result: BackfillResult) -> list[tuple[str, int, str, str]]:
    rows = pq.read_table(result.dead_letter_path).to_pylist()
    return [(r["asset_id"], r["segment_index"], r["error_code"], r["asset_outcome"]) for r in rows]


def _accounted(result: BackfillResult, rows: int) -> dict[str, Any]:
    """The report: every manifest row ends in one outcome, and the count check holds."""
    rep = result.report
    assert result.exit_code == 0, rep
    assert rep["rows"] == rows == sum(rep[o] for o in OUTCOMES), rep
    for agg in rep["by_modality"].values():
        assert agg["rows"] == sum(agg[o] for o in OUTCOMES), agg
    assert rep["count_check"]["ok"], rep["count_check"]
    return rep


@pytest.mark.parametrize("mode", ["keep", "drop"])
def test_a_refused_page_leaves_the_asset_partial_with_keep_and_dead_letters_it_with_drop(
    emulator: Endpoints, tmp_path: Path, mode: str
) -> None:
    _manifest(tmp_path, [_report_row(_pdf(tmp_path / "r.pdf", noisy=NOISY_PAGE)), _note("n1")])
    emulator.emulator.configure(max_body_bytes=BODY_LIMIT)
    result = _run(tmp_path, emulator, f"usecase.partial_assets={mode}")
    rep = _accounted(result, rows=2)
    # The preflight, three pages (the refused one is not retried: permanent) and the note.
    assert _invokes(emulator) == 1 + 3 + 1 == rep["bedrock_calls"]
    held = _segments(tmp_path)
    outcome = "partial" if mode == "keep" else "dead_lettered"
    assert _dead(result) == [("report", NOISY_PAGE, codes.VALIDATION_EXCEPTION, outcome)]
    assert rep["dead_letters_by_code"] == {codes.VALIDATION_EXCEPTION: 1}
    document = rep["by_modality"]["document"]
    if mode == "keep":
        # The other pages stay searchable; the count check expects them.
        assert held == {"report": {0, 2}, "note": {0}}
        assert (rep["embedded"], rep["partial"], rep["dead_lettered"]) == (1, 1, 0)
        assert (document["partial"], document["dead_lettered"]) == (1, 0)
        assert rep["points_written"] == rep["count_check"]["expected_points"] == 3
    else:
        # All-or-nothing: the pages written are removed.
        assert held == {"note": {0}}
        assert (rep["embedded"], rep["partial"], rep["dead_lettered"]) == (1, 0, 1)
        assert (document["partial"], document["dead_lettered"]) == (0, 1)
        assert rep["points_written"] == rep["count_check"]["expected_points"] == 1


def test_a_partial_asset_that_failed_for_good_is_skipped_by_the_next_run(
    emulator: Endpoints, tmp_path: Path
) -> None:
    pdf = _pdf(tmp_path / "r.pdf", noisy=NOISY_PAGE)
    _manifest(tmp_path, [_report_row(pdf), _note("the first note")])
    emulator.emulator.configure(max_body_bytes=BODY_LIMIT)
    first = _run(tmp_path, emulator, "usecase.partial_assets=keep")
    assert _accounted(first, rows=2)["partial"] == 1

    # The note changes; the report does not: its refused page would be refused again.
    _manifest(tmp_path, [_report_row(pdf), _note("the second note")])
    emulator.emulator.reset()
    emulator.emulator.configure(max_body_bytes=BODY_LIMIT)
    second = _run(tmp_path, emulator, "usecase.partial_assets=keep")
    rep = _accounted(second, rows=2)
    assert (rep["skipped_unchanged"], rep["embedded"], rep["partial"]) == (1, 1, 0)
    # The preflight and the note: no call for the report.
    assert _invokes(emulator) == 2
    assert _segments(tmp_path) == {"report": {0, 2}, "note": {0}}
    assert _dead(second) == []


def test_a_partial_asset_that_failed_for_a_transient_reason_is_embedded_again(
    emulator: Endpoints, tmp_path: Path
) -> None:
    _manifest(tmp_path, [_report_row(_pdf(tmp_path / "r.pdf"))])
    # After the preflight, one page's only attempt meets a server error (transient).
    emulator.emulator.script(["ok", "InternalServerException"])
    first = _run(tmp_path, emulator, "usecase.partial_assets=keep", "bedrock.max_attempts=1")
    rep = _accounted(first, rows=1)
    assert (rep["partial"], rep["embedded"]) == (1, 0)
    ((asset, failed, code, outcome),) = _dead(first)
    assert (asset, code, outcome) == ("report", codes.INTERNAL_SERVER_EXCEPTION, "partial")
    assert _segments(tmp_path) == {"report": {0, 1, 2} - {failed}}

    emulator.emulator.reset()
    second = _run(tmp_path, emulator, "usecase.partial_assets=keep")
    rep = _accounted(second, rows=1)
    assert (rep["embedded"], rep["partial"], rep["skipped_unchanged"]) == (1, 0, 0)
    # The whole asset again: the preflight and its three pages.
    assert _invokes(emulator) == 1 + 3
    assert _segments(tmp_path) == {"report": {0, 1, 2}}
    assert _dead(second) == []
