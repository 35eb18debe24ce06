"""The input parts of a request: ``text``, ``image``, ``audio``, ``video`` and their ``source``.

Frozen dataclasses mirroring the JSON fields; :class:`Source` checks and serialises itself.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from pipelines.bedrock.enums import DetailLevel, TruncationMode, VideoEmbeddingMode
from pipelines.bedrock.errors import RequestValidationError

_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>.+)$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")


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

    def to_json(self, inline_marker: str | None = None) -> dict[str, Any]:
        """The source as the API's JSON; with ``inline_marker``, inline bytes are replaced by it
        (the request's encoder splices the base64 in without a JSON pass over it)."""
        if self.data is not None:
            if inline_marker is not None:
                return {"bytes": inline_marker}
            return {"bytes": base64.b64encode(self.data).decode("ascii")}
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
