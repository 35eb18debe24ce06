"""Arrow schemas of the rows between stages (see :mod:`pipelines.core.rows`).

Stages emit tables with these exact schemas so that blocks always concatenate, whatever columns
happen to be all-null in a given batch (a batch of dead letters has no page numbers, say).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from pipelines.core.rows import EMBEDDED_COLUMNS, SEGMENT_COLUMNS

ASSET_SCHEMA = pa.schema(
    [
        ("asset_id", pa.string()),
        ("uri", pa.string()),
        ("modality", pa.string()),
        ("text", pa.large_string()),
        ("content_version", pa.string()),
        ("metadata", pa.string()),
        ("label", pa.string()),
        ("payload", pa.string()),
    ]
)

_SEGMENT_TYPES: dict[str, pa.DataType] = {
    "asset_id": pa.string(),
    "uri": pa.string(),
    "modality": pa.string(),
    "content_version": pa.string(),
    "metadata": pa.string(),
    "label": pa.string(),
    "payload": pa.string(),
    "segment_index": pa.int64(),
    "segment_count": pa.int64(),
    "input_kind": pa.string(),
    "input_format": pa.string(),
    "input_text": pa.large_string(),
    "input_bytes": pa.large_binary(),
    "input_s3_uri": pa.string(),
    "detail_level": pa.string(),
    "page": pa.int64(),
    "start_s": pa.float64(),
    "end_s": pa.float64(),
    "char_start": pa.int64(),
    "char_end": pa.int64(),
    "error_stage": pa.string(),
    "error_code": pa.string(),
    "error_message": pa.string(),
}
assert tuple(_SEGMENT_TYPES) == SEGMENT_COLUMNS

SEGMENT_SCHEMA = pa.schema(list(_SEGMENT_TYPES.items()))

_EMBEDDED_TYPES: dict[str, pa.DataType] = {
    "embedding_type": pa.string(),
    "vector": pa.list_(pa.float32()),
    "input_tokens": pa.int64(),
    "truncated_char_length": pa.int64(),
    "bedrock_calls": pa.int64(),
    "throttles": pa.int64(),
    "retries": pa.int64(),
}
assert tuple(_EMBEDDED_TYPES) == EMBEDDED_COLUMNS

EMBEDDED_SCHEMA = pa.schema(list(_SEGMENT_TYPES.items()) + list(_EMBEDDED_TYPES.items()))


def rows_to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly ``schema``'s columns (missing keys are null)."""
    rows = list(rows)
    columns = {name: [r.get(name) for r in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)
