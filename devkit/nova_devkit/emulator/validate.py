"""Request validation, as the service does it, into a typed :class:`EmbeddingRequest`.

Every failure is a ValidationException whose message names the field by its JSON path
(``singleEmbeddingParams.embeddingDimension``), so a test or a dead-letter row says what to fix.
Unknown keys are rejected too (the service validates its body against a JSON schema; a typo such as
``embeddingDimensions`` must not silently fall back to a default).

Only the *shape* is checked here; limits that need the content (text length after loading from S3,
decoded media duration, image decoding) are checked by :mod:`nova_devkit.emulator.engine`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from nova_devkit.emulator.errors import ApiError, validation

SCHEMA_VERSION = "nova-multimodal-embed-v1"
SINGLE = "SINGLE_EMBEDDING"
SEGMENTED = "SEGMENTED_EMBEDDING"
PURPOSES = (
    "GENERIC_INDEX",
    "GENERIC_RETRIEVAL",
    "TEXT_RETRIEVAL",
    "IMAGE_RETRIEVAL",
    "VIDEO_RETRIEVAL",
    "DOCUMENT_RETRIEVAL",
    "AUDIO_RETRIEVAL",
    "CLASSIFICATION",
    "CLUSTERING",
)
DIMENSIONS = (256, 384, 1024, 3072)
DEFAULT_DIMENSION = 3072
TRUNCATION_MODES = ("START", "END", "NONE")
IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")
DETAIL_LEVELS = ("STANDARD_IMAGE", "DOCUMENT_IMAGE")
AUDIO_FORMATS = ("mp3", "wav", "ogg")
VIDEO_FORMATS = ("mp4", "mov", "mkv", "webm", "flv", "mpeg", "mpg", "wmv", "3gp")
EMBEDDING_MODES = ("AUDIO_VIDEO_COMBINED", "AUDIO_VIDEO_SEPARATE")
KINDS = ("text", "image", "audio", "video")
# Segmentation bounds of the async API.
TEXT_SEGMENT_CHARS = (800, 50_000, 32_000)  # min, max, default
MEDIA_SEGMENT_SECONDS = (1, 30, 5)

S3_URI = re.compile(r"^s3://([a-z0-9][.\-a-z0-9]{1,61}[a-z0-9])/(.+)$")
_ACCOUNT = re.compile(r"^[0-9]{12}$")


@dataclass
class Source:
    """Where the content is: inline bytes or an S3 object."""

    data: bytes | None = None
    s3_uri: str | None = None
    bucket_owner: str | None = None


@dataclass
class EmbeddingRequest:
    """A validated SINGLE_EMBEDDING or SEGMENTED_EMBEDDING model input."""

    task_type: str
    purpose: str
    dimension: int
    kind: str
    field_path: str  # e.g. "singleEmbeddingParams.text", used in later messages
    text: str | None = None
    truncation_mode: str | None = None
    format: str | None = None
    detail_level: str | None = None
    embedding_mode: str | None = None
    source: Source | None = None
    max_length_chars: int | None = None
    duration_seconds: int | None = None


def _bad(path: str, what: str) -> ApiError:
    return validation(f"Malformed input request: {path}: {what}")


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(path, "expected an object")
    return value


def _no_extra(obj: dict[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _bad(f"{path}.{key}" if path else key, "extraneous key is not permitted")


def _enum(
    obj: dict[str, Any],
    key: str,
    allowed: tuple[Any, ...],
    path: str,
    *,
    required: bool,
    default: Any = None,
) -> Any:
    if key not in obj:
        if required:
            raise _bad(f"{path}.{key}", "required key is missing")
        return default
    value = obj[key]
    # bool is an int in Python; the service's schema would reject true for a dimension.
    if isinstance(value, bool) or value not in allowed:
        raise _bad(f"{path}.{key}", f"{value!r} is not one of {list(allowed)}")
    return value


def _int_in(obj: dict[str, Any], key: str, bounds: tuple[int, int, int], path: str) -> int:
    lo, hi, default = bounds
    if key not in obj:
        return default
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(f"{path}.{key}", f"{value!r} is not an integer in [{lo}, {hi}]")
    return value


def parse_source(value: Any, path: str, *, allow_bytes: bool) -> Source:
    """Validate a SourceObject: exactly one of ``bytes`` (base64) and ``s3Location``."""
    src = _object(value, path)
    _no_extra(src, ("bytes", "s3Location"), path)
    if ("bytes" in src) == ("s3Location" in src):
        raise _bad(path, "exactly one of bytes, s3Location is required")
    if "bytes" in src:
        if not allow_bytes:
            raise _bad(f"{path}.bytes", "bytes is not supported for text; use s3Location")
        raw = src["bytes"]
        if not isinstance(raw, str) or not raw:
            raise _bad(f"{path}.bytes", "expected a non-empty base64 string")
        try:
            return Source(data=base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise _bad(f"{path}.bytes", "is not valid base64") from exc
    loc = _object(src["s3Location"], f"{path}.s3Location")
    _no_extra(loc, ("uri", "bucketOwner"), f"{path}.s3Location")
    uri = loc.get("uri")
    if not isinstance(uri, str) or not S3_URI.match(uri):
        raise _bad(f"{path}.s3Location.uri", f"{uri!r} is not an s3://bucket/key URI")
    owner = loc.get("bucketOwner")
    if owner is not None and (not isinstance(owner, str) or not _ACCOUNT.match(owner)):
        raise _bad(f"{path}.s3Location.bucketOwner", f"{owner!r} is not a 12-digit account id")
    return Source(s3_uri=uri, bucket_owner=owner)


def parse_model_input(body: Any, *, expect_task: str) -> EmbeddingRequest:
    """Validate an InvokeModel body (``SINGLE_EMBEDDING``) or async ``modelInput``."""
    top = _object(body, "#")
    task = top.get("taskType")
    if task not in (SINGLE, SEGMENTED):
        raise _bad("taskType", f"{task!r} is not one of {[SINGLE, SEGMENTED]}")
    if task != expect_task:
        if task == SEGMENTED:
            raise _bad("taskType", "SEGMENTED_EMBEDDING is only supported by StartAsyncInvoke")
        raise _bad("taskType", f"StartAsyncInvoke requires {SEGMENTED}")
    params_key = "singleEmbeddingParams" if task == SINGLE else "segmentedEmbeddingParams"
    _no_extra(top, ("schemaVersion", "taskType", params_key), "")
    if "schemaVersion" in top and top["schemaVersion"] != SCHEMA_VERSION:
        raise _bad("schemaVersion", f"{top['schemaVersion']!r} is not {SCHEMA_VERSION!r}")
    if params_key not in top:
        raise _bad(params_key, "required key is missing")
    params = _object(top[params_key], params_key)
    _no_extra(params, ("embeddingPurpose", "embeddingDimension", *KINDS), params_key)
    purpose = _enum(params, "embeddingPurpose", PURPOSES, params_key, required=True)
    dimension = _enum(
        params,
        "embeddingDimension",
        DIMENSIONS,
        params_key,
        required=False,
        default=DEFAULT_DIMENSION,
    )
    present = [k for k in KINDS if k in params]
    if len(present) != 1:
        raise _bad(params_key, f"exactly one of {list(KINDS)} is required, got {present}")
    kind = present[0]
    path = f"{params_key}.{kind}"
    obj = _object(params[kind], path)
    seg = task == SEGMENTED
    req = EmbeddingRequest(
        task_type=task, purpose=purpose, dimension=dimension, kind=kind, field_path=path
    )
    seg_keys: tuple[str, ...] = ("segmentationConfig",) if seg and kind != "image" else ()
    if kind == "text":
        _no_extra(obj, ("truncationMode", "value", "source", *seg_keys), path)
        req.truncation_mode = _enum(obj, "truncationMode", TRUNCATION_MODES, path, required=True)
        if ("value" in obj) == ("source" in obj):
            raise _bad(path, "exactly one of value, source is required")
        if "value" in obj:
            if not isinstance(obj["value"], str) or not obj["value"]:
                raise _bad(f"{path}.value", "expected a non-empty string")
            req.text = obj["value"]
        else:
            req.source = parse_source(obj["source"], f"{path}.source", allow_bytes=False)
    else:
        allowed: dict[str, tuple[str, ...]] = {
            "image": ("format", "detailLevel", "source"),
            "audio": ("format", "source"),
            "video": ("format", "embeddingMode", "source"),
        }
        _no_extra(obj, (*allowed[kind], *seg_keys), path)
        formats = {"image": IMAGE_FORMATS, "audio": AUDIO_FORMATS, "video": VIDEO_FORMATS}[kind]
        req.format = _enum(obj, "format", formats, path, required=True)
        if kind == "image":
            req.detail_level = _enum(
                obj, "detailLevel", DETAIL_LEVELS, path, required=False, default="STANDARD_IMAGE"
            )
        if kind == "video":
            req.embedding_mode = _enum(obj, "embeddingMode", EMBEDDING_MODES, path, required=True)
        if "source" not in obj:
            raise _bad(f"{path}.source", "required key is missing")
        req.source = parse_source(obj["source"], f"{path}.source", allow_bytes=True)
    if seg_keys:
        cfg_path = f"{path}.segmentationConfig"
        seg_cfg = _object(obj.get("segmentationConfig", {}), cfg_path)
        if kind == "text":
            _no_extra(seg_cfg, ("maxLengthChars",), cfg_path)
            req.max_length_chars = _int_in(seg_cfg, "maxLengthChars", TEXT_SEGMENT_CHARS, cfg_path)
        else:
            _no_extra(seg_cfg, ("durationSeconds",), cfg_path)
            req.duration_seconds = _int_in(
                seg_cfg, "durationSeconds", MEDIA_SEGMENT_SECONDS, cfg_path
            )
    return req
