"""Column contracts between stages.

Rows travel through Ray Data as plain dicts. These names are the contract between the manifest
reader, the decoders, the embed stage and the writer; stages check the columns they need with
:func:`require_columns`.

Asset rows (one per manifest row, after :mod:`pipelines.core.manifest`):
    asset_id, uri, modality, text, content_version, metadata (JSON string), label,
    payload (JSON string of unknown manifest columns)

Segment rows (one per segment, produced by the decoders in :mod:`pipelines.stages`):
    the asset columns above, minus ``text`` (the segment's text is in ``input_text``), plus
    segment_index, segment_count, input_kind, input_format, input_text, input_bytes, input_s3_uri,
    detail_level, page, start_s, end_s, char_start, char_end, error_stage, error_code,
    error_message

A segment row whose ``error_code`` is set is a dead letter: it carries no input, and the later
stages pass it through untouched so that the writer can account for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MODALITIES = ("text", "image", "document", "video", "audio")
# What the model is sent for a segment (a document page is sent as an image or as text).
INPUT_KINDS = ("text", "image", "audio", "video")

ASSET_COLUMNS = (
    "asset_id",
    "uri",
    "modality",
    "text",
    "content_version",
    "metadata",
    "label",
    "payload",
)

SEGMENT_COLUMNS = (
    "asset_id",
    "uri",
    "modality",
    "content_version",
    "metadata",
    "label",
    "payload",
    "segment_index",
    "segment_count",
    "input_kind",
    "input_format",
    "input_text",
    "input_bytes",
    "input_s3_uri",
    "detail_level",
    "page",
    "start_s",
    "end_s",
    "char_start",
    "char_end",
    "error_stage",
    "error_code",
    "error_message",
)

# Columns the embed stage adds to each segment row (one output row per embedding: an
# AUDIO_VIDEO_SEPARATE segment yields two rows, one VIDEO and one AUDIO).
EMBEDDED_COLUMNS = (
    "embedding_type",
    "vector",
    "input_tokens",
    "truncated_char_length",
    "bedrock_calls",
    "throttles",
    "retries",
)

POSITION_COLUMNS = ("page", "start_s", "end_s", "char_start", "char_end")


class MissingColumnsError(KeyError):
    """A stage received rows without the columns it needs (a programming error, not data)."""


def require_columns(row: Mapping[str, Any], needed: Iterable[str], stage: str) -> None:
    """Fail loudly when a stage is wired to rows that lack the columns it needs."""
    missing = [c for c in needed if c not in row]
    if missing:
        raise MissingColumnsError(f"stage {stage!r} needs columns {missing}; got {sorted(row)}")


def segment_row(asset: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    """A segment row for ``asset`` with every contract column present (unset ones are None)."""
    row: dict[str, Any] = {c: None for c in SEGMENT_COLUMNS}
    for c in ("asset_id", "uri", "modality", "content_version", "metadata", "label", "payload"):
        row[c] = asset.get(c)
    unknown = set(fields) - set(SEGMENT_COLUMNS)
    if unknown:
        raise MissingColumnsError(f"unknown segment columns {sorted(unknown)}")
    row.update(fields)
    return row


def dead_letter_row(
    asset: Mapping[str, Any], stage: str, code: str, message: str, **fields: Any
) -> dict[str, Any]:
    """A segment row that records why ``asset`` (or one of its segments) failed at ``stage``."""
    fields.setdefault("segment_index", -1)
    fields.setdefault("segment_count", 0)
    return segment_row(
        asset, error_stage=stage, error_code=code, error_message=message[:2000], **fields
    )


def is_dead_letter(row: Mapping[str, Any]) -> bool:
    return row.get("error_code") is not None
