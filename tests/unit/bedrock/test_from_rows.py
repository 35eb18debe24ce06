"""request_from_segment: the request for each kind of segment row, and rows it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.bedrock.errors import RequestValidationError
from pipelines.bedrock.from_rows import request_from_segment
from pipelines.config.schema import EmbeddingConfig
from pipelines.core.errors import RecordError
from pipelines.core.rows import dead_letter_row, segment_row

PNG = b"\x89PNG\r\n\x1a\nfake"
S3 = "s3://bucket-1/path/to/obj.mp4"
SINGLE = "singleEmbeddingParams"

ASSET = {"asset_id": "a1", "uri": "file:///x", "modality": "image", "content_version": "v1"}


def test_request_from_segment_rows() -> None:
    cfg = EmbeddingConfig(dimension=256)
    img = segment_row(
        ASSET,
        segment_index=0,
        segment_count=1,
        input_kind="image",
        input_format="JPG",
        input_bytes=PNG,
    )
    req = request_from_segment(img, cfg)
    assert req.image is not None and req.image.format == "jpeg"
    assert req.image.detail_level == "STANDARD_IMAGE"
    assert req.dimension == 256 and req.purpose == "GENERIC_INDEX"

    page = segment_row(
        {**ASSET, "modality": "document"}, input_kind="image", input_format="png", input_bytes=PNG
    )
    preq = request_from_segment(page, cfg, purpose="DOCUMENT_RETRIEVAL")
    assert preq.image is not None and preq.image.detail_level == "DOCUMENT_IMAGE"
    assert preq.purpose == "DOCUMENT_RETRIEVAL"

    text = segment_row({**ASSET, "modality": "text"}, input_kind="text", input_text="chunk")
    treq = request_from_segment(text, EmbeddingConfig(text_truncation_mode="START"))
    assert treq.to_body()[SINGLE]["text"] == {"truncationMode": "START", "value": "chunk"}

    vid = segment_row(
        {**ASSET, "modality": "video"}, input_kind="video", input_format="mp4", input_s3_uri=S3
    )
    vreq = request_from_segment(vid, EmbeddingConfig(video_embedding_mode="AUDIO_VIDEO_SEPARATE"))
    # AUDIO is optional: a video without an audio track has no AUDIO entry.
    assert vreq.expected_types() == ("VIDEO",)
    assert vreq.to_body()[SINGLE]["video"]["source"] == {"s3Location": {"uri": S3}}

    aud = segment_row(
        {**ASSET, "modality": "audio"}, input_kind="audio", input_format="ogg", input_bytes=b"OggS"
    )
    assert request_from_segment(aud, cfg).input_kind == "audio"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"modality": "pdf"}, "row.modality"),
        ({"modality": "text", "input_kind": "text"}, "row.input_text"),
        ({"input_kind": "image", "input_format": "png"}, "row.input_bytes"),
        ({"input_kind": "image", "input_bytes": PNG}, "row.input_format"),
        (
            {"input_kind": "image", "input_bytes": PNG, "input_format": "tiff"},
            f"{SINGLE}.image.format",
        ),
    ],
)
def test_request_from_bad_segment_rows(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        asset = {**ASSET, "modality": fields.pop("modality", "image")}
        request_from_segment(segment_row(asset, **fields), EmbeddingConfig())
    assert info.value.field == field


def test_request_from_dead_letter_row_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="dead-letter"):
        request_from_segment(
            dead_letter_row(ASSET, RecordError("decode", "image_corrupt", "x")), EmbeddingConfig()
        )
