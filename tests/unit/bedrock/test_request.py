"""Request model: validation names the JSON field, bodies have the documented shape."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest

from pipelines.bedrock.enums import (
    DIMENSIONS,
    SCHEMA_VERSION,
    EmbeddingPurpose,
    TaskType,
    normalise_format,
)
from pipelines.bedrock.errors import RequestValidationError
from pipelines.bedrock.inputs import (
    AudioInput,
    ImageInput,
    S3Location,
    Source,
    TextInput,
    VideoInput,
)
from pipelines.bedrock.limits import RequestLimits
from pipelines.bedrock.request import EmbeddingRequest

PNG = b"\x89PNG\r\n\x1a\nfake"
S3 = "s3://bucket-1/path/to/obj.mp4"
SINGLE = "singleEmbeddingParams"
SEG = "segmentedEmbeddingParams"


def _fails(req: EmbeddingRequest, field: str) -> RequestValidationError:
    with pytest.raises(RequestValidationError) as info:
        req.validate()
    assert info.value.field == field
    assert str(info.value).startswith(f"invalid_request: {field}:")
    return info.value


# -- validation: every field ------------------------------------------------------------------


def test_valid_requests_of_every_kind_pass() -> None:
    EmbeddingRequest.for_text("hello").validate()
    EmbeddingRequest.for_text(s3_uri="s3://b-1/t.txt", bucket_owner="123456789012").validate()
    EmbeddingRequest.for_image(PNG, "png", "DOCUMENT_IMAGE").validate()
    EmbeddingRequest.for_image(s3_uri="s3://b-1/i.jpg", format="jpg").validate()
    EmbeddingRequest.for_audio(b"ID3", "mp3").validate()
    EmbeddingRequest.for_video(s3_uri=S3, embedding_mode="AUDIO_VIDEO_SEPARATE").validate()


@pytest.mark.parametrize("purpose", [p.value for p in EmbeddingPurpose])
def test_every_purpose_is_accepted(purpose: str) -> None:
    EmbeddingRequest.for_text("x", purpose=purpose).validate()


def test_unknown_purpose() -> None:
    err = _fails(EmbeddingRequest.for_text("x", purpose="INDEX"), f"{SINGLE}.embeddingPurpose")
    assert "GENERIC_INDEX" in str(err)


@pytest.mark.parametrize("dim", DIMENSIONS)
def test_every_dimension_is_accepted(dim: int) -> None:
    EmbeddingRequest.for_text("x", dimension=dim).validate()


@pytest.mark.parametrize("dim", [0, 512, 768, 4096, True])
def test_bad_dimension(dim: int) -> None:
    _fails(EmbeddingRequest.for_text("x", dimension=dim), f"{SINGLE}.embeddingDimension")


def test_schema_version_and_task_type() -> None:
    req = EmbeddingRequest.for_text("x")
    _fails(replace(req, schema_version="v2"), "schemaVersion")
    _fails(replace(req, task_type="BATCH"), "taskType")
    replace(req, schema_version=None).validate()


def test_exactly_one_input() -> None:
    _fails(EmbeddingRequest(), SINGLE)
    both = replace(EmbeddingRequest.for_text("x"), image=ImageInput("png", Source.inline(PNG)))
    err = _fails(both, SINGLE)
    assert "text" in str(err) and "image" in str(err)


def test_text_fields() -> None:
    text = EmbeddingRequest.for_text("x")
    assert text.text is not None
    _fails(
        replace(text, text=replace(text.text, truncation_mode="MIDDLE")),
        f"{SINGLE}.text.truncationMode",
    )
    _fails(replace(text, text=TextInput()), f"{SINGLE}.text")
    _fails(
        replace(text, text=TextInput(value="x", source=Source.s3("s3://b-1/k"))), f"{SINGLE}.text"
    )
    _fails(EmbeddingRequest.for_text("   "), f"{SINGLE}.text.value")
    # bytes are not allowed for text, even valid ones
    _fails(
        replace(text, text=TextInput(source=Source.inline(b"hello"))), f"{SINGLE}.text.source.bytes"
    )


def test_inline_text_limit_is_configurable() -> None:
    long = "a" * 9000
    EmbeddingRequest.for_text(long).validate()  # default follows the service (50,000)
    err = _fails(
        EmbeddingRequest.for_text(long, limits=RequestLimits(inline_text_max_chars=8192)),
        f"{SINGLE}.text.value",
    )
    assert "9000" in str(err) and "8192" in str(err)
    _fails(EmbeddingRequest.for_text("a" * 50_001), f"{SINGLE}.text.value")


def test_image_fields() -> None:
    _fails(EmbeddingRequest.for_image(PNG, "bmp"), f"{SINGLE}.image.format")
    _fails(EmbeddingRequest.for_image(PNG, "png", "HIGH"), f"{SINGLE}.image.detailLevel")
    _fails(EmbeddingRequest.for_image(b"", "png"), f"{SINGLE}.image.source.bytes")
    _fails(EmbeddingRequest.for_image(None, "png"), f"{SINGLE}.image.source")
    both = EmbeddingRequest(image=ImageInput("png", Source(PNG, S3Location(S3))))
    _fails(both, f"{SINGLE}.image.source")
    # detailLevel is optional (service default STANDARD_IMAGE)
    EmbeddingRequest.for_image(PNG, "png", None).validate()


def test_audio_fields() -> None:
    _fails(EmbeddingRequest.for_audio(b"x", "flac"), f"{SINGLE}.audio.format")
    _fails(
        EmbeddingRequest.for_audio(s3_uri="http://b/k", format="mp3"),
        f"{SINGLE}.audio.source.s3Location.uri",
    )


def test_video_fields() -> None:
    _fails(EmbeddingRequest.for_video(b"x", "avi"), f"{SINGLE}.video.format")
    _fails(EmbeddingRequest.for_video(b"x", "mp4", "COMBINED"), f"{SINGLE}.video.embeddingMode")
    no_mode = EmbeddingRequest(video=VideoInput("mp4", Source.inline(b"x"), embedding_mode=None))  # type: ignore[arg-type]
    err = _fails(no_mode, f"{SINGLE}.video.embeddingMode")
    assert "required" in str(err)
    for fmt in ("mp4", "mov", "mkv", "webm", "flv", "mpeg", "mpg", "wmv", "3gp"):
        EmbeddingRequest.for_video(b"x", fmt).validate()


@pytest.mark.parametrize(
    ("uri", "owner", "field"),
    [
        ("s3://bucket", None, "s3Location.uri"),
        ("s3://bucket/", None, "s3Location.uri"),
        ("s3://B/key", None, "s3Location.uri"),
        ("https://bucket.s3.amazonaws.com/key", None, "s3Location.uri"),
        ("s3://bucket-1/key", "12345", "s3Location.bucketOwner"),
    ],
)
def test_s3_location_form(uri: str, owner: str | None, field: str) -> None:
    req = EmbeddingRequest.for_image(s3_uri=uri, bucket_owner=owner, format="png")
    _fails(req, f"{SINGLE}.image.source.{field}")


def test_segmentation_only_for_segmented_requests_and_in_range() -> None:
    text = EmbeddingRequest.for_text("x")
    assert text.text is not None
    single_seg = replace(text, text=replace(text.text, max_length_chars=1000))
    _fails(single_seg, f"{SINGLE}.text.segmentationConfig.maxLengthChars")
    text.segmented(max_length_chars=800).validate()
    text.segmented(max_length_chars=50_000).validate()
    for bad in (799, 50_001):
        _fails(
            text.segmented(max_length_chars=bad), f"{SEG}.text.segmentationConfig.maxLengthChars"
        )
    video = EmbeddingRequest.for_video(s3_uri=S3)
    video.segmented(duration_seconds=1).validate()
    video.segmented(duration_seconds=30).validate()
    for bad in (0, 31):
        _fails(
            video.segmented(duration_seconds=bad), f"{SEG}.video.segmentationConfig.durationSeconds"
        )
    audio = EmbeddingRequest(audio=AudioInput("wav", Source.s3(S3), duration_seconds=5))
    _fails(audio, f"{SINGLE}.audio.segmentationConfig.durationSeconds")
    _fails(
        EmbeddingRequest.for_audio(s3_uri=S3).segmented(duration_seconds=45),
        f"{SEG}.audio.segmentationConfig.durationSeconds",
    )


def test_body_limit_counts_base64() -> None:
    # 19 MB raw -> 25.3 MB after base64: over the limit although the raw bytes are not.
    big = b"\x00" * 19_000_000
    err = _fails(EmbeddingRequest.for_image(big, "png"), "body")
    assert "s3Location" in str(err)
    EmbeddingRequest.for_image(b"\x00" * 18_000_000, "png").validate()


# -- body shapes ------------------------------------------------------------------------------


def test_text_body_shape() -> None:
    body = EmbeddingRequest.for_text("hello", dimension=1024).to_body()
    assert body == {
        "schemaVersion": SCHEMA_VERSION,
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": "GENERIC_INDEX",
            "embeddingDimension": 1024,
            "text": {"truncationMode": "END", "value": "hello"},
        },
    }
    # JSON-serialisable exactly as sent
    assert json.loads(EmbeddingRequest.for_text("hello", dimension=1024).to_body_bytes()) == body


def test_image_body_encodes_bytes_base64() -> None:
    body = EmbeddingRequest.for_image(
        PNG, "jpg", "DOCUMENT_IMAGE", purpose="DOCUMENT_RETRIEVAL"
    ).to_body()
    image = body[SINGLE]["image"]
    assert image["format"] == "jpeg"
    assert image["detailLevel"] == "DOCUMENT_IMAGE"
    assert base64.b64decode(image["source"]["bytes"]) == PNG
    assert body[SINGLE]["embeddingPurpose"] == "DOCUMENT_RETRIEVAL"


def test_video_s3_body_and_segmented_model_input() -> None:
    req = EmbeddingRequest.for_video(
        s3_uri=S3,
        bucket_owner="123456789012",
        format="mov",
        embedding_mode="AUDIO_VIDEO_SEPARATE",
    )
    assert req.to_body()[SINGLE]["video"] == {
        "format": "mov",
        "embeddingMode": "AUDIO_VIDEO_SEPARATE",
        "source": {"s3Location": {"uri": S3, "bucketOwner": "123456789012"}},
    }
    with pytest.raises(RequestValidationError, match="taskType"):
        req.to_model_input()
    mi = req.segmented(duration_seconds=10).to_model_input()
    assert mi["taskType"] == "SEGMENTED_EMBEDDING"
    assert SINGLE not in mi
    assert mi[SEG]["video"]["segmentationConfig"] == {"durationSeconds": 10}
    with pytest.raises(RequestValidationError, match="taskType"):
        req.segmented().to_body()


def test_text_segmented_model_input() -> None:
    mi = (
        EmbeddingRequest.for_text(s3_uri="s3://b-1/doc.txt")
        .segmented(max_length_chars=2000)
        .to_model_input()
    )
    assert mi[SEG]["text"] == {
        "truncationMode": "END",
        "source": {"s3Location": {"uri": "s3://b-1/doc.txt"}},
        "segmentationConfig": {"maxLengthChars": 2000},
    }


def test_normalise_format() -> None:
    assert normalise_format(".JPG") == "jpeg"
    assert normalise_format("image/png") == "png"
    assert normalise_format(None) is None


def test_requests_are_frozen_and_hashable_by_value() -> None:
    a = EmbeddingRequest.for_text("x")
    with pytest.raises(AttributeError):
        a.dimension = 256  # type: ignore[misc]
    assert a == EmbeddingRequest.for_text("x")
    assert a.task_type == TaskType.SINGLE_EMBEDDING


@pytest.mark.parametrize("kind", ["image", "audio", "video"])
def test_media_body_bytes_are_the_json_of_the_body_with_the_base64_spliced_in(kind: str) -> None:
    import base64
    import json

    from pipelines.bedrock.request import EmbeddingRequest

    data = bytes(range(256)) * 40 + b'"\\\x00'  # quotes, backslashes and NULs in the media
    build = {
        "image": lambda: EmbeddingRequest.for_image(data, "png"),
        "audio": lambda: EmbeddingRequest.for_audio(data, "mp3"),
        "video": lambda: EmbeddingRequest.for_video(data, "mp4"),
    }[kind]
    request = build()
    body = request.to_body_bytes()
    doc = json.loads(body)
    assert doc == request.to_body()
    assert base64.b64decode(doc["singleEmbeddingParams"][kind]["source"]["bytes"]) == data
    # Encoded once: validation and the call share the same bytes.
    assert request.to_body_bytes() is body
