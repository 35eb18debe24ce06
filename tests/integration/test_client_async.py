"""Async SEGMENTED_EMBEDDING through S3, and the segmentation=service stage end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.bedrock.async_jobs import NovaAsyncJobs, read_segmented_results
from pipelines.bedrock.request import EmbeddingRequest
from pipelines.config.schema import NOVA_MME_MODEL_ID, EmbeddingConfig, SegmentationConfig
from pipelines.core.rows import EMBEDDED_COLUMNS, SEGMENT_COLUMNS, is_dead_letter
from pipelines.stages.embed_service import ServiceSegmentEmbedder
from tests.integration.bedrock_media import (
    BUCKET,
    bedrock_config,
    ensure_bucket,
    recorded_bodies,
    video_file,
)

pytestmark = pytest.mark.integration

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
]


def long_text(n_chars: int) -> str:
    out: list[str] = []
    size = 0
    i = 0
    while size < n_chars:
        w = WORDS[i % len(WORDS)]
        out.append(w)
        size += len(w) + 1
        i += 1
    return " ".join(out)


@pytest.fixture
def jobs(bedrock_runtime: Any) -> NovaAsyncJobs:
    return NovaAsyncJobs(bedrock_runtime, NOVA_MME_MODEL_ID)


def test_segmented_text_job(jobs: NovaAsyncJobs, s3: Any) -> None:
    ensure_bucket(s3)
    text = long_text(5000)
    s3.put_object(Bucket=BUCKET, Key="in/doc.txt", Body=text.encode())
    req = EmbeddingRequest.for_text(s3_uri=f"s3://{BUCKET}/in/doc.txt", dimension=256).segmented(
        max_length_chars=1000
    )
    arn = jobs.start_segmented(req, f"s3://{BUCKET}/out")
    assert arn.startswith("arn:aws:bedrock:") and "async-invoke/" in arn
    status = jobs.wait(arn, 0.05, 0.2, 60)
    assert status.status == "Completed"
    assert status.output_s3_uri and status.output_s3_uri.endswith(arn.rsplit("/", 1)[1])
    res = read_segmented_results(status.output_s3_uri, s3)
    assert res.embedding_dimension == 256
    assert [e.embedding_type for e in res.results] == ["TEXT"]
    segs = sorted(res.segments, key=lambda s: s.segment_index)
    assert len(segs) >= 5
    assert [s.segment_index for s in segs] == list(range(len(segs)))
    assert all(s.ok and len(s.vector) == 256 for s in segs)
    # Segments cover the text in order, each within the requested length.
    assert segs[0].start_char == 0
    assert all(s.end_char is not None and s.start_char is not None for s in segs)
    assert all(s.end_char - s.start_char <= 1000 for s in segs)  # type: ignore[operator]
    assert max(s.end_char for s in segs) >= len(text.rstrip()) - 1  # type: ignore[type-var]
    # The same token returns the same job (idempotent start).
    assert [j.arn for j in jobs.list_jobs("Completed")].count(arn) == 1


def test_idempotent_start(jobs: NovaAsyncJobs, s3: Any) -> None:
    ensure_bucket(s3)
    s3.put_object(Bucket=BUCKET, Key="in/t2.txt", Body=long_text(2000).encode())
    req = EmbeddingRequest.for_text(s3_uri=f"s3://{BUCKET}/in/t2.txt", dimension=256).segmented()
    a = jobs.start_segmented(req, f"s3://{BUCKET}/out", client_request_token="tok-1")
    b = jobs.start_segmented(req, f"s3://{BUCKET}/out", client_request_token="tok-1")
    assert a == b
    jobs.wait(a, 0.05, 0.2, 60)


def test_segmented_video_job_separate(jobs: NovaAsyncJobs, s3: Any, tmp_path: Path) -> None:
    ensure_bucket(s3)
    path = video_file(tmp_path, seconds=6.0)
    s3.upload_file(str(path), BUCKET, "in/clip.mp4")
    req = EmbeddingRequest.for_video(
        s3_uri=f"s3://{BUCKET}/in/clip.mp4", embedding_mode="AUDIO_VIDEO_SEPARATE", dimension=256
    ).segmented(duration_seconds=2)
    status = jobs.wait(jobs.start_segmented(req, f"s3://{BUCKET}/vout"), 0.05, 0.2, 60)
    res = read_segmented_results(str(status.output_s3_uri), s3)
    types = {s.embedding_type for s in res.segments}
    assert types == {"VIDEO", "AUDIO"}
    video = sorted(
        (s for s in res.segments if s.embedding_type == "VIDEO"), key=lambda s: s.segment_index
    )
    assert len(video) == 3
    bounds = [x for s in video for x in (s.start_s, s.end_s)]
    assert bounds == pytest.approx([0, 2, 2, 4, 4, 6], abs=0.3)


def test_list_jobs_by_status(jobs: NovaAsyncJobs, s3: Any) -> None:
    ensure_bucket(s3)
    s3.put_object(Bucket=BUCKET, Key="in/t3.txt", Body=long_text(1500).encode())
    req = EmbeddingRequest.for_text(s3_uri=f"s3://{BUCKET}/in/t3.txt", dimension=256).segmented()
    arns = [jobs.start_segmented(req, f"s3://{BUCKET}/out3") for _ in range(3)]
    for a in arns:
        jobs.wait(a, 0.05, 0.2, 60)
    listed = list(jobs.list_jobs("Completed", page_size=1))
    assert set(arns) <= {j.arn for j in listed}
    assert not set(arns) & {j.arn for j in jobs.list_jobs("InProgress")}


# -- embed_service end to end --------------------------------------------------------------


def _asset(
    asset_id: str, uri: str | None, modality: str | None, text: str | None = None
) -> dict[str, Any]:
    return {
        "asset_id": asset_id,
        "uri": uri,
        "modality": modality,
        "text": text,
        "content_version": "v1",
        "metadata": "{}",
        "label": None,
        "payload": "{}",
    }


def _embedder(emulator: Any, **emb: Any) -> ServiceSegmentEmbedder:
    return ServiceSegmentEmbedder(
        EmbeddingConfig(dimension=256, **emb),
        SegmentationConfig(mode="service", service_duration_s=2, service_max_chars=1000),
        bedrock_config(emulator),
    )


def test_service_text_inline(emulator: Any, s3: Any) -> None:
    ensure_bucket(s3)
    rows = _embedder(emulator)(_asset("t1", None, "text", long_text(3500)))
    assert rows and not any(is_dead_letter(r) for r in rows)
    for r in rows:
        assert set(SEGMENT_COLUMNS) | set(EMBEDDED_COLUMNS) <= set(r)
        assert r["embedding_type"] == "TEXT" and len(r["vector"]) == 256
        assert r["input_s3_uri"].startswith(f"s3://{BUCKET}/staging/inputs/")
        assert r["char_start"] is not None and r["char_end"] is not None
    assert sorted(r["segment_index"] for r in rows) == list(range(len(rows)))
    assert {r["segment_count"] for r in rows} == {len(rows)}
    assert sum(r["bedrock_calls"] for r in rows) == 1
    # What crossed the wire: a segmented job over the staged text, with our segmentation.
    started = [b for b in recorded_bodies(emulator.emulator) if "modelInput" in b]
    params = started[-1]["modelInput"]["segmentedEmbeddingParams"]
    assert params["text"]["segmentationConfig"] == {"maxLengthChars": 1000}
    assert params["embeddingDimension"] == 256


def test_service_local_video(emulator: Any, s3: Any, tmp_path: Path) -> None:
    ensure_bucket(s3)
    path = video_file(tmp_path, seconds=4.0)
    rows = _embedder(emulator, video_embedding_mode="AUDIO_VIDEO_SEPARATE")(
        _asset("v1", str(path), "video")
    )
    assert not any(is_dead_letter(r) for r in rows)
    assert sorted((r["segment_index"], r["embedding_type"]) for r in rows) == [
        (0, "AUDIO"),
        (0, "VIDEO"),
        (1, "AUDIO"),
        (1, "VIDEO"),
    ]
    assert all(r["start_s"] is not None and r["end_s"] > r["start_s"] for r in rows)
    assert {r["input_format"] for r in rows} == {"mp4"}


def test_service_dead_letters(emulator: Any, s3: Any, tmp_path: Path) -> None:
    ensure_bucket(s3)
    emb = _embedder(emulator)
    [doc] = emb(_asset("d1", str(tmp_path / "x.pdf"), "document"))
    assert (doc["error_stage"], doc["error_code"]) == ("embed", "unsupported_modality")
    [missing] = emb(_asset("m1", str(tmp_path / "nope.mp3"), "audio"))
    assert missing["error_code"] == "file_not_found"
    flac = tmp_path / "a.flac"
    flac.write_bytes(b"fLaC")
    [fmt] = emb(_asset("f1", str(flac), "audio"))
    assert fmt["error_code"] == "unsupported_format"
    for r in (doc, missing, fmt):
        assert r["bedrock_calls"] == 0 and r["vector"] is None


def test_service_failed_job_becomes_dead_letter(emulator: Any, s3: Any, tmp_path: Path) -> None:
    ensure_bucket(s3)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"NOT MEDIA" * 100)
    rows = _embedder(emulator)(_asset("b1", str(bad), "video"))
    assert len(rows) == 1 and is_dead_letter(rows[0])
    assert rows[0]["error_stage"] == "embed"
    assert rows[0]["error_code"] in ("async_job_failed", "segment_failed", "validation_exception")


def test_service_scripted_job_failure(emulator: Any, s3: Any) -> None:
    ensure_bucket(s3)
    emulator.emulator.script(["AsyncJobFailure"])
    [row] = _embedder(emulator)(_asset("j1", None, "text", long_text(1200)))
    assert (row["error_stage"], row["error_code"]) == ("embed", "async_job_failed")
    assert "arn:aws:bedrock:" in row["error_message"]
    assert row["bedrock_calls"] == 1


def test_service_retries_throttled_start(emulator: Any, s3: Any) -> None:
    ensure_bucket(s3)
    emulator.emulator.script(["ThrottlingException", "ok"])
    rows = _embedder(emulator)(_asset("r1", None, "text", long_text(1200)))
    assert not any(is_dead_letter(r) for r in rows)
    first = rows[0]
    assert (first["bedrock_calls"], first["throttles"], first["retries"]) == (2, 1, 1)
    assert all(r["bedrock_calls"] == 0 for r in rows[1:])
    starts = [r for r in emulator.emulator.requests if r.operation == "StartAsyncInvoke"]
    assert [r.status for r in starts] == [429, 200]


def test_service_access_denied_fails_the_job(emulator: Any, s3: Any) -> None:
    from pipelines.core.errors import InfrastructureError

    ensure_bucket(s3)
    emulator.emulator.script(["AccessDeniedException"])
    with pytest.raises(InfrastructureError, match="AccessDeniedException"):
        _embedder(emulator)(_asset("x1", None, "text", long_text(1200)))


def test_service_sends_an_audio_only_video_as_audio(
    emulator: Any, s3: Any, tmp_path: Path, media: Any
) -> None:
    ensure_bucket(s3)
    clip = tmp_path / "voice-memo.wav"
    clip.write_bytes(media.audio(((6.0, (440.0,)),), fmt="wav"))
    rows = _embedder(emulator)(_asset("v-audio", str(clip), "video"))  # the manifest says video
    assert rows and not any(is_dead_letter(r) for r in rows)
    assert {r["input_kind"] for r in rows} == {"audio"} and {r["modality"] for r in rows} == {
        "video"
    }
    started = [b for b in recorded_bodies(emulator.emulator) if "modelInput" in b]
    params = started[-1]["modelInput"]["segmentedEmbeddingParams"]
    assert "audio" in params and "video" not in params
