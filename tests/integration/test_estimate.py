"""Estimates: what a run would call and cost, checked against the real run at the local endpoint.

The estimate calls nothing (counted at the endpoint) and writes nothing (the journal and the
collection are untouched); its calls equal the real run's, its cost is within 2% of the real
report's; with a journal it estimates only what a re-run would do; ``plan_only`` decodes nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from nova_devkit.media import make_pdf, make_product_photo
from nova_devkit.media.av import make_tone_audio, make_video
from pipelines.backfill import run_backfill
from pipelines.config.compose import compose_backfill
from pipelines.estimate import run_estimate

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


def _corpus(root: Path) -> Path:
    rows: list[dict[str, Any]] = [
        {"asset_id": f"note-{i}", "text": f"note {i} " + "lorem ipsum dolor " * (20 + 30 * i)}
        for i in range(4)
    ]
    rows.append({"asset_id": "same-as-note-0", "text": rows[0]["text"]})
    for i in range(2):
        photo = make_product_photo(root / f"photo-{i}.jpg", seed=i, size=(96, 64))
        rows.append({"asset_id": f"photo-{i}", "uri": str(photo)})
    rows.append({"asset_id": "report", "uri": str(make_pdf(root / "report.pdf", pages=3))})
    rows.append({"asset_id": "talk", "uri": make_tone_audio(root / "talk.wav", seconds=7.0)})
    rows.append({"asset_id": "clip", "uri": make_video(root / "clip.mp4", seconds=6.0)})
    broken = root / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    rows.append({"asset_id": "broken", "uri": str(broken)})
    path = root / "manifest.parquet"
    rows = [{"uri": None, "text": None, **r} for r in rows]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _overrides(root: Path, emulator: Endpoints) -> list[str]:
    return [
        "usecase=mixed_media",
        f"manifest={root / 'manifest.parquet'}",
        *emulator.pipeline_overrides(),
        f"qdrant.path={root / 'qdrant'}",
        "qdrant.collection=estimated",
        f"run_dir={root / 'runs'}",
        f"state.path={root / 'state'}",
        "segmentation.text_max_chars=300",
        "segmentation.text_overlap_chars=0",
        "segmentation.audio_window_s=3",
        "segmentation.video_window_s=2",
    ]


def _calls(emulator: Endpoints) -> int:
    return sum(1 for r in emulator.emulator.requests if r.operation == "InvokeModel")


def test_estimate_matches_the_real_run_and_spends_nothing(
    emulator: Endpoints, tmp_path: Path
) -> None:
    _corpus(tmp_path)
    overrides = _overrides(tmp_path, emulator)
    before = _calls(emulator)
    est = run_estimate(compose_backfill([*overrides, "dry_run=true"])).estimate
    assert _calls(emulator) == before, "an estimate must not call Bedrock"
    assert not (tmp_path / "qdrant").exists() and not (tmp_path / "state").exists()
    assert est["mode"] == "dry_run"
    assert (est["rows"], est["to_embed"], est["same_content"]) == (11, 11, 1)
    assert est["would_dead_letter"] == 1 and est["assets"] == 10
    assert (est["pages"], est["images"]) == (3, 2)
    assert est["audio_seconds"] == pytest.approx(7.0, abs=0.1)
    assert est["video_seconds"] == pytest.approx(6.0, abs=0.2)
    assert est["text_tokens"] > 0 and est["wall_clock_s"] > 0

    real = run_backfill(compose_backfill(overrides)).report
    assert real["status"] == "done"
    assert _calls(emulator) - before == real["bedrock_calls"] == est["bedrock_calls"]
    assert est["cost_usd"] == pytest.approx(real["cost_usd"], rel=0.02)
    for modality, agg in real["by_modality"].items():
        assert est["by_modality"][modality]["segments"] == agg["segments"], modality

    # With the journal: an unchanged corpus would cost nothing, and plan_only says so too.
    again = run_estimate(compose_backfill([*overrides, "dry_run=true"])).estimate
    assert (again["skipped_unchanged"], again["skipped_dead_letter"]) == (10, 1)
    assert (again["bedrock_calls"], again["cost_usd"], again["decoded"]) == (0, 0.0, 0)
    plan = run_estimate(compose_backfill([*overrides, "plan_only=true"])).estimate
    assert (plan["mode"], plan["to_embed"], plan["skipped_unchanged"]) == ("plan_only", 0, 10)
    assert "bedrock_calls" not in plan


def test_the_estimate_job_and_dry_run_write_estimate_json(
    emulator: Endpoints, tmp_path: Path
) -> None:
    _corpus(tmp_path)
    overrides = _overrides(tmp_path, emulator)
    before = _calls(emulator)
    for job, more in (("jobs.estimate", []), ("jobs.backfill", ["dry_run=true"])):
        out = subprocess.run(
            [sys.executable, "-m", job, *overrides, *more, "ray.num_cpus=2"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert "Bedrock calls" in out.stdout + out.stderr
        found = sorted((tmp_path / "runs").rglob("estimate.json"))
        data = json.loads(found[-1].read_text())
        assert data["bedrock_calls"] > 10 and data["cost_usd"] > 0
    assert _calls(emulator) == before
    assert not (tmp_path / "qdrant").exists()
