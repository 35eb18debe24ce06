"""Typed request and response model of Amazon Nova Multimodal Embeddings.

Requests are frozen dataclasses that mirror the JSON body field for field
(see ``docs/nova-mme-api.md``). They can be built in any state; :meth:`EmbeddingRequest.validate`
rejects what the service would reject, before the call costs anything, with a
:class:`~pipelines.bedrock.errors.RequestValidationError` whose message starts with the JSON path
of the offending field (``singleEmbeddingParams.image.format``). :meth:`EmbeddingRequest.to_body`
gives the ``InvokeModel`` body and :meth:`EmbeddingRequest.to_model_input` the
``StartAsyncInvoke`` ``modelInput``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from pipelines.bedrock.errors import (
    CODE_DIMENSION_MISMATCH,
    CODE_MALFORMED_RESPONSE,
    BedrockCallError,
    ErrorClass,
    RequestValidationError,
)
from pipelines.config.schema import EmbeddingConfig

SCHEMA_VERSION = "nova-multimodal-embed-v1"
DIMENSIONS = (256, 384, 1024, 3072)
DEFAULT_DIMENSION = 3072

# The documented inline text limit, and the one the service reportedly accepts (uncertain; the
# default follows the service, a stricter deployment sets RequestLimits(inline_text_max_chars=...)).
DOCUMENTED_INLINE_TEXT_MAX_CHARS = 8_192
DEFAULT_INLINE_TEXT_MAX_CHARS = 50_000
# "25 MB after base64": decimal megabytes is the conservative reading.
MAX_BODY_BYTES = 25_000_000

TEXT_SEGMENT_MIN_CHARS = 800
TEXT_SEGMENT_MAX_CHARS = 50_000
MEDIA_SEGMENT_MIN_S = 1
MEDIA_SEGMENT_MAX_S = 30

HEADER_INPUT_TOKENS = "x-amzn-bedrock-input-token-count"
HEADER_REQUEST_ID = "x-amzn-requestid"
HEADER_INVOCATION_LATENCY = "x-amzn-bedrock-invocation-latency"


class TaskType(StrEnum):
    SINGLE_EMBEDDING = "SINGLE_EMBEDDING"
    SEGMENTED_EMBEDDING = "SEGMENTED_EMBEDDING"


class EmbeddingPurpose(StrEnum):
    GENERIC_INDEX = "GENERIC_INDEX"
    GENERIC_RETRIEVAL = "GENERIC_RETRIEVAL"
    TEXT_RETRIEVAL = "TEXT_RETRIEVAL"
    IMAGE_RETRIEVAL = "IMAGE_RETRIEVAL"
    VIDEO_RETRIEVAL = "VIDEO_RETRIEVAL"
    DOCUMENT_RETRIEVAL = "DOCUMENT_RETRIEVAL"
    AUDIO_RETRIEVAL = "AUDIO_RETRIEVAL"
    CLASSIFICATION = "CLASSIFICATION"
    CLUSTERING = "CLUSTERING"


class TruncationMode(StrEnum):
    START = "START"
    END = "END"
    NONE = "NONE"


class ImageFormat(StrEnum):
    PNG = "png"
    JPEG = "jpeg"
    GIF = "gif"
    WEBP = "webp"


class DetailLevel(StrEnum):
    STANDARD_IMAGE = "STANDARD_IMAGE"
    DOCUMENT_IMAGE = "DOCUMENT_IMAGE"


class AudioFormat(StrEnum):
    MP3 = "mp3"
    WAV = "wav"
    OGG = "ogg"


class VideoFormat(StrEnum):
    MP4 = "mp4"
    MOV = "mov"
    MKV = "mkv"
    WEBM = "webm"
    FLV = "flv"
    MPEG = "mpeg"
    MPG = "mpg"
    WMV = "wmv"
    THREE_GP = "3gp"


class VideoEmbeddingMode(StrEnum):
    AUDIO_VIDEO_COMBINED = "AUDIO_VIDEO_COMBINED"
    AUDIO_VIDEO_SEPARATE = "AUDIO_VIDEO_SEPARATE"


class EmbeddingType(StrEnum):
    TEXT = "TEXT"
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"
    AUDIO = "AUDIO"
    AUDIO_VIDEO_COMBINED = "AUDIO_VIDEO_COMBINED"


# Common spellings that are not wire values but mean one (file extensions, MIME subtypes).
_FORMAT_ALIASES = {"jpg": "jpeg", "mpeg4": "mp4", "quicktime": "mov", "x-matroska": "mkv"}

_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>.+)$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")


def normalise_format(value: str | None) -> str | None:
    """``".JPG"`` / ``"image/jpg"`` -> ``"jpeg"``; None stays None."""
    if value is None:
        return None
    v = value.strip().lower().rsplit("/", 1)[-1].lstrip(".")
    return _FORMAT_ALIASES.get(v, v)


def _values(enum: type[StrEnum]) -> list[str]:
    return [m.value for m in enum]


# ----------------------------------------------------------------------------------------------
# Request model
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Location:
    """An S3 object the service reads itself (``bucket_owner``: 12-digit account id, optional)."""

    uri: str
    bucket_owner: str | None = None


@dataclass(frozen=True)
class Source:
    """Where an input comes from: inline ``data`` (sent base64) or an S3 object; exactly one."""

    data: bytes | None = None
    s3_location: S3Location | None = None

    @classmethod
    def inline(cls, data: bytes) -> Source:
        return cls(data=data)

    @classmethod
    def s3(cls, uri: str, bucket_owner: str | None = None) -> Source:
        return cls(s3_location=S3Location(uri, bucket_owner))

    def validate(self, path: str, *, allow_bytes: bool = True) -> None:
        if (self.data is None) == (self.s3_location is None):
            raise RequestValidationError(path, "exactly one of bytes or s3Location is required")
        if self.data is not None:
            if not allow_bytes:
                raise RequestValidationError(f"{path}.bytes", "inline bytes are not allowed here")
            if not isinstance(self.data, bytes | bytearray | memoryview) or len(self.data) == 0:
                raise RequestValidationError(f"{path}.bytes", "must be non-empty bytes")
        if self.s3_location is not None:
            loc = self.s3_location
            if not isinstance(loc.uri, str) or not _S3_URI.match(loc.uri):
                raise RequestValidationError(
                    f"{path}.s3Location.uri", f"must look like s3://bucket/key, got {loc.uri!r}"
                )
            if loc.bucket_owner is not None and not _ACCOUNT_ID.match(str(loc.bucket_owner)):
                raise RequestValidationError(
                    f"{path}.s3Location.bucketOwner", "must be a 12-digit AWS account id"
                )

    def to_json(self) -> dict[str, Any]:
        if self.data is not None:
            return {"bytes": base64.b64encode(bytes(self.data)).decode("ascii")}
        assert self.s3_location is not None
        loc: dict[str, Any] = {"uri": self.s3_location.uri}
        if self.s3_location.bucket_owner is not None:
            loc["bucketOwner"] = self.s3_location.bucket_owner
        return {"s3Location": loc}


@dataclass(frozen=True)
class TextInput:
    """``text``: inline ``value`` or an S3 ``source`` (never bytes).

    ``max_length_chars`` is ``segmentationConfig.maxLengthChars`` (SEGMENTED_EMBEDDING only).
    """

    value: str | None = None
    source: Source | None = None
    truncation_mode: str = TruncationMode.END
    max_length_chars: int | None = None


@dataclass(frozen=True)
class ImageInput:
    """``image``: one picture; ``detail_level`` DOCUMENT_IMAGE for pages with text and tables."""

    format: str
    source: Source
    detail_level: str | None = DetailLevel.STANDARD_IMAGE


@dataclass(frozen=True)
class AudioInput:
    """``audio``: at most 30 s per sync call; ``duration_seconds`` segments async jobs."""

    format: str
    source: Source
    duration_seconds: int | None = None


@dataclass(frozen=True)
class VideoInput:
    """``video``: at most 30 s per sync call; ``embedding_mode`` is required by the service."""

    format: str
    source: Source
    embedding_mode: str = VideoEmbeddingMode.AUDIO_VIDEO_COMBINED
    duration_seconds: int | None = None


@dataclass(frozen=True)
class RequestLimits:
    """Client-side limits checked by :meth:`EmbeddingRequest.validate` (service values differ
    between documentation and behaviour, so they are configurable)."""

    inline_text_max_chars: int = DEFAULT_INLINE_TEXT_MAX_CHARS
    max_body_bytes: int = MAX_BODY_BYTES


Input = TextInput | ImageInput | AudioInput | VideoInput


@dataclass(frozen=True)
class EmbeddingRequest:
    """One Nova MME request: SINGLE_EMBEDDING (``InvokeModel``) or SEGMENTED_EMBEDDING (async).

    Exactly one of ``text``, ``image``, ``audio``, ``video`` is set. ``schema_version=None`` omits
    the (optional) ``schemaVersion`` field.
    """

    purpose: str = EmbeddingPurpose.GENERIC_INDEX
    dimension: int = DEFAULT_DIMENSION
    text: TextInput | None = None
    image: ImageInput | None = None
    audio: AudioInput | None = None
    video: VideoInput | None = None
    task_type: str = TaskType.SINGLE_EMBEDDING
    schema_version: str | None = SCHEMA_VERSION
    limits: RequestLimits = field(default_factory=RequestLimits, compare=False)

    # -- convenience constructors ------------------------------------------------------------

    @classmethod
    def for_text(
        cls,
        value: str | None = None,
        *,
        s3_uri: str | None = None,
        bucket_owner: str | None = None,
        purpose: str = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int = DEFAULT_DIMENSION,
        truncation_mode: str = TruncationMode.END,
        limits: RequestLimits | None = None,
    ) -> EmbeddingRequest:
        """Text inline (``value``) or from S3 (``s3_uri``)."""
        source = Source.s3(s3_uri, bucket_owner) if s3_uri is not None else None
        return cls(
            purpose=purpose,
            dimension=dimension,
            text=TextInput(value=value, source=source, truncation_mode=truncation_mode),
            limits=limits or RequestLimits(),
        )

    @classmethod
    def for_image(
        cls,
        data: bytes | None = None,
        format: str = ImageFormat.PNG,
        detail_level: str | None = DetailLevel.STANDARD_IMAGE,
        *,
        s3_uri: str | None = None,
        bucket_owner: str | None = None,
        purpose: str = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int = DEFAULT_DIMENSION,
    ) -> EmbeddingRequest:
        """An image from bytes or from S3."""
        return cls(
            purpose=purpose,
            dimension=dimension,
            image=ImageInput(
                format=normalise_format(format) or "",
                source=_source(data, s3_uri, bucket_owner),
                detail_level=detail_level,
            ),
        )

    @classmethod
    def for_audio(
        cls,
        data: bytes | None = None,
        format: str = AudioFormat.MP3,
        *,
        s3_uri: str | None = None,
        bucket_owner: str | None = None,
        purpose: str = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int = DEFAULT_DIMENSION,
    ) -> EmbeddingRequest:
        """An audio clip (at most 30 s for a sync call) from bytes or from S3."""
        return cls(
            purpose=purpose,
            dimension=dimension,
            audio=AudioInput(
                format=normalise_format(format) or "", source=_source(data, s3_uri, bucket_owner)
            ),
        )

    @classmethod
    def for_video(
        cls,
        data: bytes | None = None,
        format: str = VideoFormat.MP4,
        embedding_mode: str = VideoEmbeddingMode.AUDIO_VIDEO_COMBINED,
        *,
        s3_uri: str | None = None,
        bucket_owner: str | None = None,
        purpose: str = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int = DEFAULT_DIMENSION,
    ) -> EmbeddingRequest:
        """A video clip (at most 30 s for a sync call) from bytes or from S3."""
        return cls(
            purpose=purpose,
            dimension=dimension,
            video=VideoInput(
                format=normalise_format(format) or "",
                source=_source(data, s3_uri, bucket_owner),
                embedding_mode=embedding_mode,
            ),
        )

    def segmented(
        self, *, max_length_chars: int | None = None, duration_seconds: int | None = None
    ) -> EmbeddingRequest:
        """This request as SEGMENTED_EMBEDDING; the segmentation value goes to its input (text:
        ``max_length_chars``; audio/video: ``duration_seconds``; None = service default)."""
        out = replace(self, task_type=TaskType.SEGMENTED_EMBEDDING)
        if self.text is not None and max_length_chars is not None:
            out = replace(out, text=replace(self.text, max_length_chars=max_length_chars))
        if self.audio is not None and duration_seconds is not None:
            out = replace(out, audio=replace(self.audio, duration_seconds=duration_seconds))
        if self.video is not None and duration_seconds is not None:
            out = replace(out, video=replace(self.video, duration_seconds=duration_seconds))
        return out

    # -- introspection -----------------------------------------------------------------------

    @property
    def params_key(self) -> str:
        return (
            "segmentedEmbeddingParams"
            if self.task_type == TaskType.SEGMENTED_EMBEDDING
            else "singleEmbeddingParams"
        )

    @property
    def input_kind(self) -> str:
        """``text`` | ``image`` | ``audio`` | ``video`` (the one input that is set)."""
        kinds = self._kinds()
        return kinds[0] if len(kinds) == 1 else ""

    def _kinds(self) -> list[str]:
        return [k for k in ("text", "image", "audio", "video") if getattr(self, k) is not None]

    def expected_types(self) -> tuple[str, ...]:
        """The embedding types a successful response carries."""
        kind = self.input_kind
        if kind == "video":
            assert self.video is not None
            if self.video.embedding_mode == VideoEmbeddingMode.AUDIO_VIDEO_SEPARATE:
                # Only VIDEO is required: a video without an audio track has nothing to put in
                # an AUDIO entry (the service's behaviour there is undocumented; the local
                # endpoint omits it). Both entries are matched by type when present.
                return (EmbeddingType.VIDEO,)
            return (EmbeddingType.AUDIO_VIDEO_COMBINED,)
        return (kind.upper(),) if kind else ()

    # -- validation --------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`RequestValidationError` for anything the service would reject."""
        self._validate_fields()
        size = len(self._encode_body())
        if size > self.limits.max_body_bytes:
            raise RequestValidationError(
                "body",
                f"request body is {size} bytes after base64, over the "
                f"{self.limits.max_body_bytes}-byte limit; pass large inputs by s3Location",
            )

    def _validate_fields(self) -> None:
        p = self.params_key
        if self.schema_version is not None and self.schema_version != SCHEMA_VERSION:
            raise RequestValidationError(
                "schemaVersion", f"must be {SCHEMA_VERSION!r}, got {self.schema_version!r}"
            )
        if self.task_type not in _values(TaskType):
            raise RequestValidationError(
                "taskType", f"must be one of {_values(TaskType)}, got {self.task_type!r}"
            )
        if self.purpose not in _values(EmbeddingPurpose):
            raise RequestValidationError(
                f"{p}.embeddingPurpose",
                f"must be one of {_values(EmbeddingPurpose)}, got {self.purpose!r}",
            )
        if isinstance(self.dimension, bool) or self.dimension not in DIMENSIONS:
            raise RequestValidationError(
                f"{p}.embeddingDimension", f"must be one of {DIMENSIONS}, got {self.dimension!r}"
            )
        kinds = self._kinds()
        if len(kinds) != 1:
            raise RequestValidationError(
                p, f"exactly one of text, image, audio, video is required, got {kinds or 'none'}"
            )
        segmented = self.task_type == TaskType.SEGMENTED_EMBEDDING
        if self.text is not None:
            self._validate_text(f"{p}.text", self.text, segmented)
        if self.image is not None:
            self._validate_image(f"{p}.image", self.image)
        if self.audio is not None:
            a = self.audio
            _check_enum(f"{p}.audio.format", a.format, AudioFormat)
            _check_source(f"{p}.audio.source", a.source)
            _check_duration(f"{p}.audio", a.duration_seconds, segmented)
        if self.video is not None:
            v = self.video
            _check_enum(f"{p}.video.format", v.format, VideoFormat)
            if v.embedding_mode is None:
                raise RequestValidationError(f"{p}.video.embeddingMode", "is required")
            _check_enum(f"{p}.video.embeddingMode", v.embedding_mode, VideoEmbeddingMode)
            _check_source(f"{p}.video.source", v.source)
            _check_duration(f"{p}.video", v.duration_seconds, segmented)

    def _validate_text(self, path: str, t: TextInput, segmented: bool) -> None:
        _check_enum(f"{path}.truncationMode", t.truncation_mode, TruncationMode)
        if (t.value is None) == (t.source is None):
            raise RequestValidationError(path, "exactly one of value or source is required")
        if t.value is not None:
            if not isinstance(t.value, str) or not t.value.strip():
                raise RequestValidationError(f"{path}.value", "must be a non-empty string")
            limit = self.limits.inline_text_max_chars
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

    def _validate_image(self, path: str, im: ImageInput) -> None:
        _check_enum(f"{path}.format", im.format, ImageFormat)
        if im.detail_level is not None:
            _check_enum(f"{path}.detailLevel", im.detail_level, DetailLevel)
        _check_source(f"{path}.source", im.source)

    # -- serialisation -----------------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "embeddingPurpose": str(self.purpose),
            "embeddingDimension": self.dimension,
        }
        if self.text is not None:
            t = self.text
            text: dict[str, Any] = {"truncationMode": str(t.truncation_mode)}
            if t.value is not None:
                text["value"] = t.value
            if t.source is not None:
                text["source"] = t.source.to_json()
            if t.max_length_chars is not None:
                text["segmentationConfig"] = {"maxLengthChars": t.max_length_chars}
            params["text"] = text
        if self.image is not None:
            im = self.image
            image: dict[str, Any] = {"format": str(im.format)}
            if im.detail_level is not None:
                image["detailLevel"] = str(im.detail_level)
            image["source"] = im.source.to_json()
            params["image"] = image
        if self.audio is not None:
            a = self.audio
            audio: dict[str, Any] = {"format": str(a.format), "source": a.source.to_json()}
            if a.duration_seconds is not None:
                audio["segmentationConfig"] = {"durationSeconds": a.duration_seconds}
            params["audio"] = audio
        if self.video is not None:
            v = self.video
            video: dict[str, Any] = {
                "format": str(v.format),
                "embeddingMode": str(v.embedding_mode),
                "source": v.source.to_json(),
            }
            if v.duration_seconds is not None:
                video["segmentationConfig"] = {"durationSeconds": v.duration_seconds}
            params["video"] = video
        return params

    def _raw_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.schema_version is not None:
            body["schemaVersion"] = self.schema_version
        body["taskType"] = str(self.task_type)
        body[self.params_key] = self._params()
        return body

    def _encode_body(self) -> bytes:
        return json.dumps(self._raw_body(), ensure_ascii=False, separators=(",", ":")).encode()

    def to_body(self, *, validate: bool = True) -> dict[str, Any]:
        """The ``InvokeModel`` body (SINGLE_EMBEDDING)."""
        if self.task_type != TaskType.SINGLE_EMBEDDING:
            raise RequestValidationError(
                "taskType", "InvokeModel takes SINGLE_EMBEDDING; use to_model_input() for async"
            )
        if validate:
            self.validate()
        return self._raw_body()

    def to_body_bytes(self) -> bytes:
        """The validated ``InvokeModel`` body as UTF-8 JSON (size checked on these bytes)."""
        if self.task_type != TaskType.SINGLE_EMBEDDING:
            raise RequestValidationError(
                "taskType", "InvokeModel takes SINGLE_EMBEDDING; use to_model_input() for async"
            )
        self._validate_fields()
        data = self._encode_body()
        if len(data) > self.limits.max_body_bytes:
            raise RequestValidationError(
                "body",
                f"request body is {len(data)} bytes after base64, over the "
                f"{self.limits.max_body_bytes}-byte limit; pass large inputs by s3Location",
            )
        return data

    def to_model_input(self, *, validate: bool = True) -> dict[str, Any]:
        """The ``StartAsyncInvoke`` ``modelInput`` (SEGMENTED_EMBEDDING)."""
        if self.task_type != TaskType.SEGMENTED_EMBEDDING:
            raise RequestValidationError(
                "taskType", "async jobs take SEGMENTED_EMBEDDING; call .segmented() first"
            )
        if validate:
            self.validate()
        return self._raw_body()


def _source(data: bytes | None, s3_uri: str | None, bucket_owner: str | None) -> Source:
    if s3_uri is not None:
        return Source(data=data, s3_location=S3Location(s3_uri, bucket_owner))
    return Source(data=data)


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


# ----------------------------------------------------------------------------------------------
# From pipeline rows
# ----------------------------------------------------------------------------------------------


def request_from_segment(
    row: Mapping[str, Any],
    emb_cfg: EmbeddingConfig,
    purpose: str | None = None,
    limits: RequestLimits | None = None,
) -> EmbeddingRequest:
    """The SINGLE_EMBEDDING request for one segment row (see :mod:`pipelines.core.rows`).

    ``purpose`` defaults to ``emb_cfg.index_purpose``. Raises :class:`RequestValidationError`
    (field ``row.<column>``) when the row does not say what to send, and validates the request.
    """
    if row.get("error_code") is not None:
        raise ValueError("dead-letter rows carry no input; pass them through instead")
    kind = row.get("input_kind")
    fmt = normalise_format(row.get("input_format"))
    data = row.get("input_bytes")
    s3_uri = row.get("input_s3_uri")
    common: dict[str, Any] = {
        "purpose": purpose or emb_cfg.index_purpose,
        "dimension": emb_cfg.dimension,
    }
    if kind == "text":
        text = row.get("input_text")
        if text is None and s3_uri is None:
            raise RequestValidationError("row.input_text", "a text segment needs input_text")
        req = EmbeddingRequest(
            text=TextInput(
                value=text,
                source=Source.s3(s3_uri) if text is None and s3_uri else None,
                truncation_mode=emb_cfg.text_truncation_mode,
            ),
            limits=limits or RequestLimits(),
            **common,
        )
    elif kind in ("image", "audio", "video"):
        if data is None and not s3_uri:
            raise RequestValidationError(
                "row.input_bytes", f"an {kind} segment needs input_bytes or input_s3_uri"
            )
        if not fmt:
            raise RequestValidationError("row.input_format", f"an {kind} segment needs a format")
        source = Source(data=bytes(data)) if data is not None else Source.s3(str(s3_uri))
        if kind == "image":
            detail = row.get("detail_level") or (
                emb_cfg.document_detail_level
                if row.get("modality") == "document"
                else emb_cfg.image_detail_level
            )
            req = EmbeddingRequest(
                image=ImageInput(format=fmt, source=source, detail_level=detail), **common
            )
        elif kind == "audio":
            req = EmbeddingRequest(audio=AudioInput(format=fmt, source=source), **common)
        else:
            req = EmbeddingRequest(
                video=VideoInput(
                    format=fmt, source=source, embedding_mode=emb_cfg.video_embedding_mode
                ),
                **common,
            )
    else:
        raise RequestValidationError(
            "row.input_kind", f"must be one of text, image, audio, video; got {kind!r}"
        )
    req.validate()
    return req


# ----------------------------------------------------------------------------------------------
# Responses
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Embedding:
    """One returned vector; ``truncated_char_length`` is set only when text was truncated."""

    embedding_type: str
    vector: list[float]
    truncated_char_length: int | None = None

    @property
    def dimension(self) -> int:
        return len(self.vector)


@dataclass(frozen=True)
class EmbeddingResult:
    """A parsed ``InvokeModel`` response.

    ``input_tokens`` comes from the ``X-Amzn-Bedrock-Input-Token-Count`` header (None when the
    service does not send it). ``calls`` and ``throttles`` count the attempts a retrying caller
    spent (1 and 0 for a single call).
    """

    embeddings: list[Embedding]
    input_tokens: int | None = None
    request_id: str | None = None
    latency_ms: float | None = None
    calls: int = 1
    throttles: int = 0

    def by_type(self, embedding_type: str) -> Embedding:
        """The embedding of ``embedding_type`` (responses list types in no documented order)."""
        for e in self.embeddings:
            if e.embedding_type == embedding_type:
                return e
        raise KeyError(
            f"no {embedding_type} embedding; got {[e.embedding_type for e in self.embeddings]}"
        )

    def get(self, embedding_type: str) -> Embedding | None:
        try:
            return self.by_type(embedding_type)
        except KeyError:
            return None

    @property
    def types(self) -> list[str]:
        return [e.embedding_type for e in self.embeddings]

    @property
    def vector(self) -> list[float]:
        """The vector of a one-embedding response (raises for AUDIO_VIDEO_SEPARATE)."""
        if len(self.embeddings) != 1:
            raise ValueError(f"response has {len(self.embeddings)} embeddings; use by_type()")
        return self.embeddings[0].vector


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name:
            return str(v)
    return None


def _malformed(message: str, request_id: str | None = None) -> BedrockCallError:
    return BedrockCallError(
        CODE_MALFORMED_RESPONSE, ErrorClass.TRANSIENT, message, request_id=request_id
    )


def parse_embedding_response(
    body: bytes | str | Mapping[str, Any],
    headers: Mapping[str, Any] | None = None,
    *,
    expected_dimension: int | None = None,
    expected_types: tuple[str, ...] | None = None,
    latency_ms: float | None = None,
) -> EmbeddingResult:
    """Parse an ``InvokeModel`` body (+ headers) into an :class:`EmbeddingResult`.

    An unparsable or incomplete body is TRANSIENT (``MalformedResponse``: a truncated response is
    the usual cause); a vector of another length than ``expected_dimension`` is PERMANENT
    (``DimensionMismatch``: retrying returns the same).
    """
    headers = headers or {}
    request_id = _header(headers, HEADER_REQUEST_ID)
    if isinstance(body, Mapping):
        doc: Any = body
    else:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _malformed(f"response body is not JSON: {exc}", request_id) from exc
    items = doc.get("embeddings") if isinstance(doc, Mapping) else None
    if not isinstance(items, list) or not items:
        raise _malformed("response has no 'embeddings' list", request_id)
    embeddings: list[Embedding] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise _malformed(f"embeddings[{i}] is not an object", request_id)
        etype = item.get("embeddingType")
        vec = item.get("embedding")
        if not isinstance(etype, str) or not isinstance(vec, list) or not vec:
            raise _malformed(f"embeddings[{i}] lacks embeddingType or embedding", request_id)
        try:
            vector = [float(x) for x in vec]
        except (TypeError, ValueError) as exc:
            raise _malformed(f"embeddings[{i}].embedding is not numeric", request_id) from exc
        if expected_dimension is not None and len(vector) != expected_dimension:
            raise BedrockCallError(
                CODE_DIMENSION_MISMATCH,
                ErrorClass.PERMANENT,
                f"{etype} embedding has {len(vector)} dimensions, requested {expected_dimension}",
                request_id=request_id,
            )
        tcl = item.get("truncatedCharLength")
        embeddings.append(
            Embedding(etype, vector, int(tcl) if isinstance(tcl, int | float) else None)
        )
    if expected_types is not None:
        missing = set(expected_types) - {e.embedding_type for e in embeddings}
        if missing:
            raise _malformed(f"response lacks embedding types {sorted(missing)}", request_id)
    tokens = _header(headers, HEADER_INPUT_TOKENS)
    try:
        input_tokens = int(tokens) if tokens is not None else None
    except ValueError:
        input_tokens = None
    return EmbeddingResult(
        embeddings=embeddings,
        input_tokens=input_tokens,
        request_id=request_id,
        latency_ms=latency_ms,
    )
