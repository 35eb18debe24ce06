"""The backfill job end to end: Ray Data + the local Bedrock endpoint + embedded Qdrant.

Every manifest row must end embedded or dead-lettered, whatever is wrong with its file; a re-run
must give the same point ids and count; what crossed the wire must match the report.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from nova_devkit.media import (
    make_article,
    make_bomb_png,
    make_encrypted_pdf,
    make_near_duplicate,
    make_pdf,
    make_product_photo,
    make_truncated_file,
)
from nova_devkit.media.av import make_tone_audio, make_video
from pipelines.backfill import run_backfill
from pipelines.config.compose import compose_backfill
from pipelines.config.schema import BackfillJobConfig

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


def _wav_with_unknown_codec(path: Path) -> Path:
    """A RIFF/WAVE file whose format tag names no codec anyone implements."""
    data = b"\x00\x01" * 8000
    fmt = struct.pack("<HHIIHH", 0x7A7A, 1, 16000, 32000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Good assets of every modality and broken ones of every kind."""
    root = tmp_path_factory.mktemp("corpus")
    good: dict[str, tuple[Path | None, str | None]] = {}
    broken: dict[str, Path] = {}

    good["doc-1"] = (make_pdf(root / "doc-1.pdf", pages=3, seed=1), None)
    good["img-1"] = (make_product_photo(root / "img-1.jpg", seed=1, size=(320, 240)), None)
    good["img-1-dup"] = (make_near_duplicate(root / "img-1.jpg", root / "img-1-dup.jpg"), None)
    good["aud-1"] = (Path(make_tone_audio(root / "aud-1.mp3", 35, kind="speech", seed=1)), None)
    good["vid-1"] = (
        Path(make_video(root / "vid-1.mp4", 12, fps=10, size=(96, 64), with_audio=True, gop=10)),
        None,
    )
    good["vid-silent"] = (
        Path(make_video(root / "vid-silent.mp4", 6, fps=10, size=(96, 64), with_audio=False)),
        None,
    )
    (root / "txt-1.txt").write_text(make_article(1, paragraphs=30))
    good["txt-1"] = (root / "txt-1.txt", None)
    good["inline-1"] = (None, make_article(2, paragraphs=2))

    # Broken: truncated, zero bytes, wrong extension, unsupported codec, encrypted, oversized.
    broken["pdf-truncated"] = make_truncated_file(root / "doc-1.pdf", root / "pdf-trunc.pdf", 0.3)
    broken["pdf-encrypted"] = make_encrypted_pdf(root / "enc.pdf")
    broken["pdf-empty"] = _touch(root / "empty.pdf")
    broken["pdf-wrong-ext"] = _copy(root / "img-1.jpg", root / "photo-named.pdf")
    broken["img-truncated"] = make_truncated_file(root / "img-1.jpg", root / "img-trunc.jpg", 0.2)
    broken["img-empty"] = _touch(root / "empty.png")
    broken["img-bomb"] = make_bomb_png(root / "bomb.png")
    broken["img-wrong-ext"] = _copy(root / "doc-1.pdf", root / "doc-named.png")
    broken["aud-truncated"] = make_truncated_file(root / "aud-1.mp3", root / "aud-trunc.mp3", 0.001)
    broken["aud-empty"] = _touch(root / "empty.wav")
    broken["aud-codec"] = _wav_with_unknown_codec(root / "weird-codec.wav")
    broken["aud-wrong-ext"] = _copy(root / "txt-1.txt", root / "text-named.mp3")
    broken["vid-truncated"] = make_truncated_file(root / "vid-1.mp4", root / "vid-trunc.mp4", 0.02)
    broken["vid-empty"] = _touch(root / "empty.mp4")
    broken["vid-wrong-ext"] = _copy(root / "img-1.jpg", root / "photo-named.mp4")
    broken["txt-empty"] = _touch(root / "empty.txt")
    broken["txt-binary"] = _copy(root / "img-1.jpg", root / "photo-named.txt")

    modality = {
        "doc": "document",
        "pdf": "document",
        "img": "image",
        "aud": "audio",
        "vid": "video",
        "txt": "text",
        "inline": "text",
    }
    rows = []
    for asset_id, (path, text) in good.items():
        rows.append(_row(asset_id, path, modality[asset_id.split("-")[0]], text))
    for asset_id, path in broken.items():
        rows.append(_row(asset_id, path, modality[asset_id.split("-")[0]], None))
    manifest = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    return {"manifest": manifest, "good": set(good), "broken": set(broken), "root": root}


def _touch(p: Path) -> Path:
    p.write_bytes(b"")
    return p


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(Path(src).read_bytes())
    return dst


def _row(asset_id: str, path: Path | None, modality: str, text: str | None) -> dict[str, Any]:
    return {
        "asset_id": asset_id,
        "uri": str(path) if path else None,
        "modality": modality,
        "text": text,
        "content_version": "v1",
        "metadata": json.dumps({"owner": "tests"}),
        "label": modality,
        "shelf": "A1",  # an unknown column: kept as payload
    }


def _job(corpus: dict[str, Any], emulator: Endpoints, tmp: Path, *more: str) -> BackfillJobConfig:
    return compose_backfill(
        [
            "usecase=mixed_media",
            f"manifest={corpus['manifest']}",
            *emulator.pipeline_overrides(),
            "bedrock.base_backoff_s=0.05",
            f"qdrant.path={tmp / 'qdrant'}",
            f"run_dir={tmp / 'runs'}",
            f"state.path={tmp / 'state'}",
            "segmentation.audio_window_s=15",
            *more,
        ]
    )


def _points(path: Path, collection: str) -> dict[str, dict[str, Any]]:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(path))
    try:
        points, _ = client.scroll(collection, limit=10_000, with_payload=True, with_vectors=False)
        return {str(p.id): dict(p.payload or {}) for p in points}
    finally:
        client.close()


def test_every_row_ends_embedded_or_dead_lettered_and_reruns_are_idempotent(
    corpus: dict[str, Any], emulator: Endpoints, tmp_path: Path
) -> None:
    job = _job(corpus, emulator, tmp_path)
    first = run_backfill(job)
    rep = first.report

    # Nothing vanishes: every row has an outcome, the good ones embedded, the broken dead.
    assert rep["rows"] == len(corpus["good"]) + len(corpus["broken"])
    assert rep["embedded"] == len(corpus["good"])
    assert rep["dead_lettered"] == len(corpus["broken"])
    dead = pq.read_table(first.dead_letter_path).to_pylist()
    dead_ids = {r["asset_id"] for r in dead}
    assert dead_ids == corpus["broken"]
    for r in dead:
        assert r["stage"] and r["error_code"] and r["message"], r
    codes = {r["asset_id"]: r["error_code"] for r in dead}
    assert codes["pdf-encrypted"] == "pdf_encrypted"
    assert codes["img-bomb"] == "image_too_large"
    assert codes["pdf-empty"] == codes["img-empty"] == "empty_file"

    # What crossed the wire matches the report, and carries the use case's parameters.
    sent = [r for r in emulator.emulator.requests if r.operation == "InvokeModel"]
    assert len(sent) == rep["bedrock_calls"]
    for r in sent:
        params = r.body["singleEmbeddingParams"]
        assert params["embeddingPurpose"] == "GENERIC_INDEX"
        assert params["embeddingDimension"] == 1024

    # Points: one per segment, payload per the contract, no point of a dead asset.
    points = _points(tmp_path / "qdrant", job.qdrant.collection)
    assert len(points) == rep["points_written"] == rep["points_in_collection"]
    assert rep["count_check"]["ok"]
    assert {p["asset_id"] for p in points.values()} == corpus["good"]
    audio = sorted(
        (p for p in points.values() if p["asset_id"] == "aud-1"), key=lambda p: p["segment_index"]
    )
    assert len(audio) == 3 and all(p["segment_count"] == 3 for p in audio)
    assert audio[0]["start_s"] == 0 and audio[-1]["end_s"] == pytest.approx(35, abs=0.5)
    page = next(p for p in points.values() if p["asset_id"] == "doc-1")
    assert page["page"] >= 1 and page["fingerprint"] and page["content_version"] == "v1"
    assert page["metadata"]["owner"] == "tests" and page["metadata"]["shelf"] == "A1"

    # A re-run writes the same ids: same count, nothing duplicated.
    second = run_backfill(_job(corpus, emulator, tmp_path))
    again = _points(tmp_path / "qdrant", job.qdrant.collection)
    assert set(again) == set(points)
    assert second.report["points_in_collection"] == rep["points_in_collection"]


def test_throttles_and_transient_errors_are_retried_and_counted(
    corpus: dict[str, Any], emulator: Endpoints, tmp_path: Path
) -> None:
    emulator.emulator.script(
        [
            "ok",  # the preflight call
            "ThrottlingException",
            "ThrottlingException",
            "InternalServerException",
            "DroppedConnection",
        ]
    )
    job = _job(corpus, emulator, tmp_path, "usecase.modalities=[image,text]")
    rep = run_backfill(job).report
    assert rep["throttled"] == 2
    assert rep["retries"] == 4
    stats = emulator.emulator.stats()
    assert stats["requests"] == rep["bedrock_calls"]
    assert rep["by_modality"]["image"]["embedded"] == 2
    assert rep["by_modality"]["text"]["embedded"] == 2


def test_permanent_errors_become_dead_letters_with_the_service_code(
    corpus: dict[str, Any], emulator: Endpoints, tmp_path: Path
) -> None:
    emulator.emulator.configure(faults={"ModelErrorException": 1.0})
    job = _job(corpus, emulator, tmp_path, "usecase.modalities=[image]", "bedrock.max_attempts=3")
    result = run_backfill(job)
    assert result.report["embedded"] == 0
    dead = pq.read_table(result.dead_letter_path).to_pylist()
    good_images = {a for a in corpus["good"] if a.startswith("img")}
    embed_dead = {r["asset_id"] for r in dead if r["stage"] == "embed"}
    assert embed_dead == good_images
    assert {r["error_code"] for r in dead if r["stage"] == "embed"} == {"model_error_exception"}


def test_audio_video_separate_gives_two_points_per_segment_and_handles_silent_video(
    corpus: dict[str, Any], emulator: Endpoints, tmp_path: Path
) -> None:
    job = _job(
        corpus,
        emulator,
        tmp_path,
        "usecase.modalities=[video]",
        "embedding.video_embedding_mode=AUDIO_VIDEO_SEPARATE",
        "segmentation.video_window_s=5",
    )
    rep = run_backfill(job).report
    assert rep["embedded"] == 2  # vid-1 and vid-silent; the broken videos are dead letters
    points = _points(tmp_path / "qdrant", job.qdrant.collection).values()
    by_asset: dict[str, list[str]] = {}
    for p in points:
        by_asset.setdefault(p["asset_id"], []).append(p["embedding_type"])
    assert sorted(set(by_asset["vid-1"])) == ["AUDIO", "VIDEO"]
    assert by_asset["vid-1"].count("AUDIO") == by_asset["vid-1"].count("VIDEO") >= 2
    assert set(by_asset["vid-silent"]) == {"VIDEO"}
    sent = [r for r in emulator.emulator.requests if r.operation == "InvokeModel"]
    sent = [r for r in sent if "video" in r.body["singleEmbeddingParams"]]  # not the preflight
    assert {r.body["singleEmbeddingParams"]["video"]["embeddingMode"] for r in sent} == {
        "AUDIO_VIDEO_SEPARATE"
    }


def test_service_segmentation_stages_to_s3_and_maps_segments_to_points(
    corpus: dict[str, Any], emulator: Endpoints, tmp_path: Path, bucket: str
) -> None:
    job = _job(
        corpus,
        emulator,
        tmp_path,
        "usecase.modalities=[audio,video,text]",
        "segmentation.mode=service",
        "segmentation.service_duration_s=5",
        f"bedrock.s3_staging_uri=s3://{bucket}/staging",
        "bedrock.async_poll_min_s=0.1",
        "bedrock.async_poll_max_s=0.5",
        # No StartAsyncInvoke quota at the local endpoint: the pipeline's default of 60 starts
        # a minute would pace this run's starts and polls (measured: 21 s instead of 6 s).
        "bedrock.quota.async_requests_per_minute=6000",
    )
    rep = run_backfill(job).report
    good = {"aud-1", "vid-1", "vid-silent", "txt-1", "inline-1"}
    assert rep["embedded"] == len(good)
    points = _points(tmp_path / "qdrant", job.qdrant.collection).values()
    assert {p["asset_id"] for p in points} == good
    audio = sorted(
        (p for p in points if p["asset_id"] == "aud-1"), key=lambda p: p["segment_index"]
    )
    # 35 s of audio in 5 s service segments, each with its time span.
    assert len(audio) == 7
    assert [p["start_s"] for p in audio] == pytest.approx([0, 5, 10, 15, 20, 25, 30], abs=0.01)
    started = [r for r in emulator.emulator.requests if r.operation == "StartAsyncInvoke"]
    assert started and all(
        r.body["modelInput"]["taskType"] == "SEGMENTED_EMBEDDING" for r in started
    )
    # One synchronous call only: the preflight's, proving access to the model before any work.
    sync = [r for r in emulator.emulator.requests if r.operation == "InvokeModel"]
    assert [r.body["singleEmbeddingParams"]["text"]["value"] for r in sync] == ["."]
