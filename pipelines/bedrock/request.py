"""The request model of Amazon Nova Multimodal Embeddings: :class:`EmbeddingRequest`.

Requests are frozen dataclasses that mirror the JSON body field for field. They can be built in
any state; :meth:`EmbeddingRequest.validate` rejects what the service would reject, before the
call costs anything (:mod:`pipelines.bedrock.validation`). :meth:`EmbeddingRequest.to_body`
gives the ``InvokeModel`` body and :meth:`EmbeddingRequest.to_model_input` the
``StartAsyncInvoke`` ``modelInput``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from typing import Any

from pipelines.bedrock.enums import (
    DEFAULT_DIMENSION,
    SCHEMA_VERSION,
    AudioFormat,
    DetailLevel,
    EmbeddingPurpose,
    EmbeddingType,
    ImageFormat,
    TaskType,
    TruncationMode,
    VideoEmbeddingMode,
    VideoFormat,
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
from pipelines.bedrock.validation import check_body_size, check_fields

# Stands for the inline bytes while a media request's JSON is built (see _encode_body).
_MARKER = "\x00inline-media-bytes\x00"
_QUOTED_MARKER = json.dumps(_MARKER)


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
        **where: Any,
    ) -> EmbeddingRequest:
        """An image from bytes or from S3 (``where``: ``s3_uri``, ``bucket_owner``, ``purpose``,
        ``dimension``)."""
        return cls._media("image", ImageInput, data, format, where, detail_level=detail_level)

    @classmethod
    def for_audio(
        cls, data: bytes | None = None, format: str = AudioFormat.MP3, **where: Any
    ) -> EmbeddingRequest:
        """An audio clip (at most 30 s for a sync call) from bytes or from S3 (``where`` as
        :meth:`for_image`)."""
        return cls._media("audio", AudioInput, data, format, where)

    @classmethod
    def for_video(
        cls,
        data: bytes | None = None,
        format: str = VideoFormat.MP4,
        embedding_mode: str = VideoEmbeddingMode.AUDIO_VIDEO_COMBINED,
        **where: Any,
    ) -> EmbeddingRequest:
        """A video clip (at most 30 s for a sync call) from bytes or from S3 (``where`` as
        :meth:`for_image`)."""
        return cls._media("video", VideoInput, data, format, where, embedding_mode=embedding_mode)

    @classmethod
    def _media(
        cls,
        field_name: str,
        input_type: Any,
        data: bytes | None,
        format: str,
        where: dict[str, Any],
        **options: Any,
    ) -> EmbeddingRequest:
        source = _source(data, where.pop("s3_uri", None), where.pop("bucket_owner", None))
        media = input_type(format=normalise_format(format) or "", source=source, **options)
        where.setdefault("purpose", EmbeddingPurpose.GENERIC_INDEX)
        where.setdefault("dimension", DEFAULT_DIMENSION)
        return cls(**{field_name: media}, **where)

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
        kinds = self.input_kinds()
        return kinds[0] if len(kinds) == 1 else ""

    def input_kinds(self) -> list[str]:
        """The inputs that are set (a valid request has exactly one)."""
        return [k for k in ("text", "image", "audio", "video") if getattr(self, k) is not None]

    def expected_types(self) -> tuple[str, ...]:
        """The embedding types a successful response carries."""
        kind = self.input_kind
        if self.video is not None:
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
        check_fields(self)
        check_body_size(len(self._encode_body()), self.limits)

    # -- serialisation -----------------------------------------------------------------------

    def _params(self, marker: str | None = None) -> dict[str, Any]:
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
            image["source"] = im.source.to_json(marker)
            params["image"] = image
        if self.audio is not None:
            a = self.audio
            audio: dict[str, Any] = {"format": str(a.format), "source": a.source.to_json(marker)}
            if a.duration_seconds is not None:
                audio["segmentationConfig"] = {"durationSeconds": a.duration_seconds}
            params["audio"] = audio
        if self.video is not None:
            v = self.video
            video: dict[str, Any] = {
                "format": str(v.format),
                "embeddingMode": str(v.embedding_mode),
                "source": v.source.to_json(marker),
            }
            if v.duration_seconds is not None:
                video["segmentationConfig"] = {"durationSeconds": v.duration_seconds}
            params["video"] = video
        return params

    def _raw_body(self, marker: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.schema_version is not None:
            body["schemaVersion"] = self.schema_version
        body["taskType"] = str(self.task_type)
        body[self.params_key] = self._params(marker)
        return body

    def _inline(self) -> bytes | None:
        """The media input's inline bytes, if any (text is never sent as bytes)."""
        for media in (self.image, self.audio, self.video):
            if media is not None and media.source.data is not None:
                return bytes(media.source.data)
        return None

    def _encode_body(self) -> bytes:
        """The body as UTF-8 JSON, encoded once per request (validation and the call share it).

        Inline media is most of a body (a page image is ~100-400 KB): its base64 is spliced in
        as bytes (ASCII, nothing to escape) instead of going through ``json.dumps`` as a string
        and being encoded again, which measured ~3x faster per request."""
        cached: bytes | None = self.__dict__.get("_encoded")
        if cached is not None:
            return cached
        data = self._inline()
        if data is None:
            out = json.dumps(self._raw_body(), ensure_ascii=False, separators=(",", ":")).encode()
        else:
            # The marker cannot occur elsewhere: a media request's other strings are enum values.
            text = json.dumps(self._raw_body(_MARKER), ensure_ascii=False, separators=(",", ":"))
            head, _, tail = text.partition(_QUOTED_MARKER)
            out = b"".join((head.encode(), b'"', base64.b64encode(data), b'"', tail.encode()))
        object.__setattr__(self, "_encoded", out)
        return out

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
        check_fields(self)
        data = self._encode_body()
        check_body_size(len(data), self.limits)
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
