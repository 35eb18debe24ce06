"""Check a request field by field, as the service would, naming the JSON path of what is wrong.

:func:`check_fields` raises :class:`~pipelines.bedrock.errors.RequestValidationError` whose
message starts with the path of the offending field (``singleEmbeddingParams.image.format``);
:func:`check_body_size` checks the encoded body against :class:`RequestLimits`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pipelines.bedrock.enums import (
    DIMENSIONS,
    SCHEMA_VERSION,
    AudioFormat,
    DetailLevel,
    EmbeddingPurpose,
    ImageFormat,
    TaskType,
    TruncationMode,
    VideoEmbeddingMode,
    VideoFormat,
)
from pipelines.bedrock.errors import RequestValidationError
from pipelines.bedrock.inputs import ImageInput, Source, TextInput
from pipelines.bedrock.limits import (
    DOCUMENTED_INLINE_TEXT_MAX_CHARS,
    MEDIA_SEGMENT_MAX_S,
    MEDIA_SEGMENT_MIN_S,
    TEXT_SEGMENT_MAX_CHARS,
    TEXT_SEGMENT_MIN_CHARS,
    RequestLimits,
)

if TYPE_CHECKING:
    from pipelines.bedrock.request import EmbeddingRequest


def _values(enum: type[StrEnum]) -> list[str]:
    return [m.value for m in enum]


def check_fields(req: EmbeddingRequest) -> None:
    """Raise :class:`RequestValidationError` for the first field the service would reject."""
    p = req.params_key
    if req.schema_version is not None and req.schema_version != SCHEMA_VERSION:
        raise RequestValidationError(
            "schemaVersion", f"must be {SCHEMA_VERSION!r}, got {req.schema_version!r}"
        )
    if req.task_type not in _values(TaskType):
        raise RequestValidationError(
            "taskType", f"must be one of {_values(TaskType)}, got {req.task_type!r}"
        )
    if req.purpose not in _values(EmbeddingPurpose):
        raise RequestValidationError(
            f"{p}.embeddingPurpose",
            f"must be one of {_values(EmbeddingPurpose)}, got {req.purpose!r}",
        )
    if isinstance(req.dimension, bool) or req.dimension not in DIMENSIONS:
        raise RequestValidationError(
            f"{p}.embeddingDimension", f"must be one of {DIMENSIONS}, got {req.dimension!r}"
        )
    kinds = req.input_kinds()
    if len(kinds) != 1:
        raise RequestValidationError(
            p, f"exactly one of text, image, audio, video is required, got {kinds or 'none'}"
        )
    segmented = req.task_type == TaskType.SEGMENTED_EMBEDDING
    if req.text is not None:
        _check_text(f"{p}.text", req.text, segmented, req.limits)
    if req.image is not None:
        _check_image(f"{p}.image", req.image)
    if req.audio is not None:
        a = req.audio
        _check_enum(f"{p}.audio.format", a.format, AudioFormat)
        _check_source(f"{p}.audio.source", a.source)
        _check_duration(f"{p}.audio", a.duration_seconds, segmented)
    if req.video is not None:
        v = req.video
        _check_enum(f"{p}.video.format", v.format, VideoFormat)
        if v.embedding_mode is None:
            raise RequestValidationError(f"{p}.video.embeddingMode", "is required")
        _check_enum(f"{p}.video.embeddingMode", v.embedding_mode, VideoEmbeddingMode)
        _check_source(f"{p}.video.source", v.source)
        _check_duration(f"{p}.video", v.duration_seconds, segmented)


def check_body_size(size: int, limits: RequestLimits) -> None:
    """Raise :class:`RequestValidationError` when an encoded body of ``size`` bytes is too big."""
    if size > limits.max_body_bytes:
        raise RequestValidationError(
            "body",
            f"request body is {size} bytes after base64, over the "
            f"{limits.max_body_bytes}-byte limit; pass large inputs by s3Location",
        )


def _check_text(path: str, t: TextInput, segmented: bool, limits: RequestLimits) -> None:
    _check_enum(f"{path}.truncationMode", t.truncation_mode, TruncationMode)
    if (t.value is None) == (t.source is None):
        raise RequestValidationError(path, "exactly one of value or source is required")
    if t.value is not None:
        if not isinstance(t.value, str) or not t.value.strip():
            raise RequestValidationError(f"{path}.value", "must be a non-empty string")
        limit = limits.inline_text_max_chars
        if len(t.value) > limit:
            raise RequestValidationError(
                f"{path}.value",
                f"{len(t.value)} characters, over the inline limit of {limit} "
                f"(documented: {DOCUMENTED_INLINE_TEXT_MAX_CHARS}); pass it by s3Location",
            )
    if t.source is not None:
        t.source.validate(f"{path}.source", allow_bytes=False)
    if t.max_length_chars is not None:
        seg = f"{path}.segmentationConfig.maxLengthChars"
        if not segmented:
            raise RequestValidationError(seg, "segmentation is only for SEGMENTED_EMBEDDING")
        if (
            isinstance(t.max_length_chars, bool)
            or not isinstance(t.max_length_chars, int)
            or not TEXT_SEGMENT_MIN_CHARS <= t.max_length_chars <= TEXT_SEGMENT_MAX_CHARS
        ):
            raise RequestValidationError(
                seg,
                f"must be an integer in {TEXT_SEGMENT_MIN_CHARS}..{TEXT_SEGMENT_MAX_CHARS}, "
                f"got {t.max_length_chars!r}",
            )


def _check_image(path: str, im: ImageInput) -> None:
    _check_enum(f"{path}.format", im.format, ImageFormat)
    if im.detail_level is not None:
        _check_enum(f"{path}.detailLevel", im.detail_level, DetailLevel)
    _check_source(f"{path}.source", im.source)


def _check_enum(path: str, value: Any, enum: type[StrEnum]) -> None:
    if value not in _values(enum):
        raise RequestValidationError(path, f"must be one of {_values(enum)}, got {value!r}")


def _check_source(path: str, source: Any) -> None:
    if not isinstance(source, Source):
        raise RequestValidationError(path, "is required")
    source.validate(path)


def _check_duration(path: str, seconds: int | None, segmented: bool) -> None:
    if seconds is None:
        return
    seg = f"{path}.segmentationConfig.durationSeconds"
    if not segmented:
        raise RequestValidationError(seg, "segmentation is only for SEGMENTED_EMBEDDING")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int)
        or not MEDIA_SEGMENT_MIN_S <= seconds <= MEDIA_SEGMENT_MAX_S
    ):
        raise RequestValidationError(
            seg,
            f"must be an integer in {MEDIA_SEGMENT_MIN_S}..{MEDIA_SEGMENT_MAX_S}, got {seconds!r}",
        )
