"""Requests the service rejects: ValidationException (HTTP 400) whose message names the field."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipelines.config.schema import NOVA_MME_MODEL_ID

TEXT_BODY: dict[str, Any] = {
    "schemaVersion": "nova-multimodal-embed-v1",
    "taskType": "SINGLE_EMBEDDING",
    "singleEmbeddingParams": {
        "embeddingPurpose": "GENERIC_INDEX",
        "embeddingDimension": 1024,
        "text": {"truncationMode": "END", "value": "hello"},
    },
}


def with_changes(path: str, value: Any) -> dict[str, Any]:
    """TEXT_BODY with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    body = copy.deepcopy(TEXT_BODY)
    *parents, last = path.split(".")
    node = body
    for p in parents:
        node = node[p]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return body


def expect_validation(client: Any, body: Any, field: str, model_id: str = NOVA_MME_MODEL_ID) -> str:
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    with pytest.raises(ClientError) as info:
        client.invoke_model(modelId=model_id, body=raw)
    err = info.value.response
    assert err["Error"]["Code"] == "ValidationException"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert field in err["Error"]["Message"], err["Error"]["Message"]
    return str(err["Error"]["Message"])


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("singleEmbeddingParams.embeddingPurpose", "SEARCH", "embeddingPurpose"),
        ("singleEmbeddingParams.embeddingPurpose", ..., "embeddingPurpose"),
        ("singleEmbeddingParams.embeddingDimension", 512, "embeddingDimension"),
        ("singleEmbeddingParams.embeddingDimension", "1024", "embeddingDimension"),
        ("singleEmbeddingParams.embeddingDimension", True, "embeddingDimension"),
        ("singleEmbeddingParams.text.truncationMode", ..., "truncationMode"),
        ("singleEmbeddingParams.text.truncationMode", "MIDDLE", "truncationMode"),
        ("singleEmbeddingParams.text.value", "", "text.value"),
        ("singleEmbeddingParams.text.colour", "red", "text.colour"),
        ("singleEmbeddingParams.embeddingDimensions", 256, "embeddingDimensions"),
        ("schemaVersion", "nova-multimodal-embed-v2", "schemaVersion"),
        ("taskType", "SEGMENTED_EMBEDDING", "taskType"),
        ("taskType", "EMBED", "taskType"),
        (
            "singleEmbeddingParams.image",
            {"format": "png", "source": {"bytes": "AA=="}},
            "exactly one of",
        ),
        (
            "singleEmbeddingParams.text.source",
            {"s3Location": {"uri": "s3://b/k"}},
            "exactly one of value, source",
        ),
        ("singleEmbeddingParams", ..., "singleEmbeddingParams"),
    ],
)
def test_invalid_fields(bedrock_runtime: Any, path: str, value: Any, field: str) -> None:
    expect_validation(bedrock_runtime, with_changes(path, value), field)


@pytest.mark.parametrize(
    ("kind", "obj", "field"),
    [
        ("image", {"format": "bmp", "source": {"bytes": "AA=="}}, "image.format"),
        (
            "image",
            {"format": "png", "detailLevel": "HIGH", "source": {"bytes": "AA=="}},
            "detailLevel",
        ),
        ("image", {"format": "png", "source": {"bytes": "not base64!"}}, "source.bytes"),
        ("image", {"format": "png"}, "image.source"),
        ("audio", {"format": "flac", "source": {"bytes": "AA=="}}, "audio.format"),
        (
            "video",
            {"format": "avi", "embeddingMode": "AUDIO_VIDEO_COMBINED", "source": {"bytes": "AA=="}},
            "video.format",
        ),
        ("video", {"format": "mp4", "source": {"bytes": "AA=="}}, "embeddingMode"),
        (
            "video",
            {"format": "mp4", "embeddingMode": "VIDEO_ONLY", "source": {"bytes": "AA=="}},
            "embeddingMode",
        ),
        ("text", {"truncationMode": "END", "source": {"bytes": "aGVsbG8="}}, "text.source.bytes"),
        (
            "text",
            {"truncationMode": "END", "source": {"s3Location": {"uri": "https://x/y"}}},
            "s3Location.uri",
        ),
    ],
)
def test_invalid_modality_objects(bedrock_runtime: Any, kind: str, obj: dict, field: str) -> None:
    body = with_changes("singleEmbeddingParams.text", ...)
    body["singleEmbeddingParams"][kind] = obj
    expect_validation(bedrock_runtime, body, field)


def test_unknown_model_and_bad_json(bedrock_runtime: Any) -> None:
    expect_validation(
        bedrock_runtime, TEXT_BODY, "model identifier", "amazon.titan-embed-text-v2:0"
    )
    other_region = f"arn:aws:bedrock:eu-west-1::foundation-model/{NOVA_MME_MODEL_ID}"
    expect_validation(bedrock_runtime, TEXT_BODY, "model identifier", other_region)
    expect_validation(bedrock_runtime, b"{not json", "not valid JSON")


def test_text_limits(bedrock_runtime: Any, emulator: Any) -> None:
    over_tokens = with_changes(
        "singleEmbeddingParams.text", {"truncationMode": "NONE", "value": "w " * 17000}
    )
    expect_validation(bedrock_runtime, over_tokens, "8192-token limit")
    too_long = with_changes("singleEmbeddingParams.text.value", "x" * 50_001)
    expect_validation(bedrock_runtime, too_long, "50000-character limit")
    emulator.emulator.configure(text_max_chars=8192)
    expect_validation(
        bedrock_runtime,
        with_changes("singleEmbeddingParams.text.value", "x" * 8193),
        "8192-character",
    )
    errors = emulator.emulator.stats()["errors"]
    assert errors == {"ValidationException": 3}


def test_missing_s3_object(bedrock_runtime: Any, bucket: str) -> None:
    src = {"s3Location": {"uri": f"s3://{bucket}/nope.png"}}
    body = with_changes("singleEmbeddingParams.text", ...)
    body["singleEmbeddingParams"]["image"] = {"format": "png", "source": src}
    msg = expect_validation(bedrock_runtime, body, "image.source.s3Location.uri")
    assert "not found" in msg


def test_media_checks(bedrock_runtime: Any, media: Any, emulator: Any) -> None:
    def media_body(kind: str, obj: dict) -> dict:
        body = with_changes("singleEmbeddingParams.text", ...)
        body["singleEmbeddingParams"][kind] = obj
        return body

    def src(data: bytes) -> dict:
        return {"bytes": base64.b64encode(data).decode()}

    expect_validation(
        bedrock_runtime,
        media_body("image", {"format": "png", "source": src(b"garbage")}),
        "cannot be decoded",
    )
    jpeg = media.image("circle", "jpeg")
    expect_validation(
        bedrock_runtime, media_body("image", {"format": "png", "source": src(jpeg)}), "not png"
    )
    long_audio = media.audio([(31.0, [440.0])], "mp3")
    expect_validation(
        bedrock_runtime,
        media_body("audio", {"format": "mp3", "source": src(long_audio)}),
        "longer than 30 seconds",
    )
    wav = media.audio([(1.0, [440.0])], "wav")
    expect_validation(
        bedrock_runtime, media_body("audio", {"format": "mp3", "source": src(wav)}), "not mp3"
    )
    # The 25 MB body limit, scaled down so the test stays light.
    emulator.emulator.configure(max_body_bytes=4096)
    big = media_body("image", {"format": "png", "source": src(bytes(8000))})
    expect_validation(bedrock_runtime, big, "request body is")
    assert [r.error_code for r in emulator.emulator.requests] == ["ValidationException"] * 5
