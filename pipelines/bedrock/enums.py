"""The API's enumerations and fixed values of Amazon Nova Multimodal Embeddings (wire spellings).

Also :func:`normalise_format`, which maps common spellings of a format (file extension, MIME
subtype) to its wire value.
"""

from __future__ import annotations

from enum import StrEnum

SCHEMA_VERSION = "nova-multimodal-embed-v1"
DIMENSIONS = (256, 384, 1024, 3072)
DEFAULT_DIMENSION = 3072


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


def normalise_format(value: str | None) -> str | None:
    """``".JPG"`` / ``"image/jpg"`` -> ``"jpeg"``; None stays None."""
    if value is None:
        return None
    v = value.strip().lower().rsplit("/", 1)[-1].lstrip(".")
    return _FORMAT_ALIASES.get(v, v)
