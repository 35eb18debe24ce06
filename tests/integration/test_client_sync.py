"""Every modality through NovaEmbeddingsClient, real boto3 over HTTP to the local endpoint."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import pytest

from pipelines.bedrock.client import NovaEmbeddingsClient
from pipelines.bedrock.from_rows import request_from_segment
from pipelines.bedrock.request import EmbeddingRequest
from pipelines.config.schema import NOVA_MME_MODEL_ID, EmbeddingConfig
from pipelines.core.rows import segment_row
from tests.integration.bedrock_media import (
    BUCKET,
    audio_file,
    ensure_bucket,
    jpeg_bytes,
    png_bytes,
    recorded_bodies,
    video_file,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def client(bedrock_runtime: Any) -> NovaEmbeddingsClient:
    return NovaEmbeddingsClient(bedrock_runtime, NOVA_MME_MODEL_ID)


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def test_text(client: NovaEmbeddingsClient, emulator: Any) -> None:
    req = EmbeddingRequest.for_text("a quiet harbour at dawn", dimension=256)
    res = client.embed(req)
    [emb] = res.embeddings
    assert emb.embedding_type == "TEXT"
    assert len(emb.vector) == 256
    assert _norm(emb.vector) == pytest.approx(1.0, abs=1e-3)
    assert res.input_tokens is not None and res.input_tokens > 0
    assert res.request_id
    # Identical input, identical vector; the body that crossed the wire is ours.
    assert client.embed(req).vector == emb.vector
    assert recorded_bodies(emulator.emulator)[-1] == req.to_body()


def test_text_truncation_reports_truncated_length(client: NovaEmbeddingsClient) -> None:
    text = "word " * 12_000  # 60,000 chars: more than 8K tokens
    req = EmbeddingRequest.for_text(text[:49_000], dimension=256, truncation_mode="END")
    res = client.embed(req)
    tcl = res.by_type("TEXT").truncated_char_length
    assert tcl is not None and 0 < tcl < 49_000


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_image_inline(client: NovaEmbeddingsClient, emulator: Any, fmt: str) -> None:
    data = png_bytes() if fmt == "png" else jpeg_bytes()
    req = EmbeddingRequest.for_image(data, fmt, "DOCUMENT_IMAGE", dimension=384)
    res = client.embed(req)
    assert res.types == ["IMAGE"]
    assert len(res.vector) == 384
    sent = recorded_bodies(emulator.emulator)[-1]["singleEmbeddingParams"]["image"]
    # The endpoint records inline payloads by their base64 length.
    assert sent["source"]["bytes"] == f"<{len(base64.b64encode(data))} base64 chars>"
    assert sent["detailLevel"] == "DOCUMENT_IMAGE"


def test_image_from_s3(client: NovaEmbeddingsClient, s3: Any) -> None:
    ensure_bucket(s3)
    data = png_bytes((20, 200, 20))
    s3.put_object(Bucket=BUCKET, Key="img/a.png", Body=data)
    by_s3 = client.embed(
        EmbeddingRequest.for_image(s3_uri=f"s3://{BUCKET}/img/a.png", format="png", dimension=256)
    )
    inline = client.embed(EmbeddingRequest.for_image(data, "png", dimension=256))
    assert by_s3.vector == inline.vector


def test_audio(client: NovaEmbeddingsClient, tmp_path: Path) -> None:
    data = audio_file(tmp_path, 2.0, "wav").read_bytes()
    res = client.embed(EmbeddingRequest.for_audio(data, "wav", dimension=1024))
    assert res.types == ["AUDIO"]
    assert len(res.vector) == 1024


def test_video_combined(client: NovaEmbeddingsClient, tmp_path: Path) -> None:
    data = video_file(tmp_path).read_bytes()
    res = client.embed(EmbeddingRequest.for_video(data, "mp4", dimension=256))
    assert res.types == ["AUDIO_VIDEO_COMBINED"]


def test_video_separate_returns_both_types(client: NovaEmbeddingsClient, tmp_path: Path) -> None:
    data = video_file(tmp_path).read_bytes()
    req = EmbeddingRequest.for_video(data, "mp4", "AUDIO_VIDEO_SEPARATE", dimension=256)
    res = client.embed(req)
    assert sorted(res.types) == ["AUDIO", "VIDEO"]
    assert res.by_type("VIDEO").vector != res.by_type("AUDIO").vector
    assert all(len(e.vector) == 256 for e in res.embeddings)


def test_matryoshka_prefix(client: NovaEmbeddingsClient) -> None:
    long = client.embed(EmbeddingRequest.for_text("prefix check", dimension=3072)).vector
    short = client.embed(EmbeddingRequest.for_text("prefix check", dimension=256)).vector
    head = long[:256]
    n = _norm(head)
    assert short == pytest.approx([x / n for x in head], abs=1e-4)


def test_segment_row_through_client(client: NovaEmbeddingsClient) -> None:
    asset = {"asset_id": "p1", "uri": "file:///doc.pdf", "modality": "document"}
    row = segment_row(
        asset,
        segment_index=0,
        segment_count=1,
        input_kind="image",
        input_format="png",
        input_bytes=png_bytes(),
        page=1,
    )
    res = client.embed(request_from_segment(row, EmbeddingConfig(dimension=256)))
    assert res.types == ["IMAGE"]


def test_from_config_client_reaches_the_endpoint(emulator: Any) -> None:
    from tests.integration.bedrock_media import bedrock_config

    client = NovaEmbeddingsClient.from_config(bedrock_config(emulator))
    assert len(client.embed(EmbeddingRequest.for_text("x", dimension=256)).vector) == 256
