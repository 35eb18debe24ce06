"""The column table: every row type that travels between stages, in one place.

Each row type is a ``TypedDict`` whose fields carry their Arrow type (``Annotated[..., pa.X]``).
From that one table come the three things stages need:

- the column names (:attr:`RowType.names`), which stages check their input against;
- the Arrow schema (:attr:`RowType.schema`), which every stage emits exactly, so that blocks
  always concatenate whatever columns are all-null in a batch (a batch of dead letters has no
  page numbers, say);
- typed rows for the code inside a stage (``SegmentRow`` etc.: plain dicts, checked by mypy).

The row types, in pipeline order:

``AssetRow``
    one per manifest row (see :mod:`pipelines.core.manifest`): identity, source and metadata.
``SegmentRow``
    one per segment a decoder cut from an asset: the asset's identity plus what the model is sent
    (``input_*``), the segment's position, and, for a dead letter, ``error_*``.
``EmbeddedRow``
    a segment row plus one embedding and the call's accounting. A segment embedded with
    ``AUDIO_VIDEO_SEPARATE`` yields two. After the write stage the same type is the write's
    *acknowledgement* (vector and input bytes dropped; a refused row becomes a dead letter).
``StoredPointRow``
    one point read back from a vector store (migrations, analytics).

A row whose ``error_code`` is set is a dead letter: it carries no input, and later stages pass it
through untouched so that the accounting sees every failure.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, TypedDict

import pyarrow as pa

from pipelines.core.errors import RecordError


class RecordRow(TypedDict):
    """What every row of an asset carries: its identity and the manifest's metadata."""

    asset_id: Annotated[str, pa.string()]
    uri: Annotated[str | None, pa.string()]
    modality: Annotated[str, pa.string()]
    content_version: Annotated[str | None, pa.string()]
    # The manifest's ``metadata`` (a JSON object as a string) and its unknown columns (JSON).
    metadata: Annotated[str | None, pa.string()]
    label: Annotated[str | None, pa.string()]
    payload: Annotated[str | None, pa.string()]


class AssetRow(RecordRow):
    """One manifest row: an asset to embed."""

    text: Annotated[str | None, pa.large_string()]


class SegmentRow(RecordRow):
    """One segment of an asset, ready to be sent to the model (or a dead letter)."""

    segment_index: Annotated[int, pa.int64()]
    segment_count: Annotated[int, pa.int64()]
    input_kind: Annotated[str | None, pa.string()]
    input_format: Annotated[str | None, pa.string()]
    input_text: Annotated[str | None, pa.large_string()]
    input_bytes: Annotated[bytes | None, pa.large_binary()]
    input_s3_uri: Annotated[str | None, pa.string()]
    detail_level: Annotated[str | None, pa.string()]
    page: Annotated[int | None, pa.int64()]
    start_s: Annotated[float | None, pa.float64()]
    end_s: Annotated[float | None, pa.float64()]
    char_start: Annotated[int | None, pa.int64()]
    char_end: Annotated[int | None, pa.int64()]
    error_stage: Annotated[str | None, pa.string()]
    error_code: Annotated[str | None, pa.string()]
    error_message: Annotated[str | None, pa.string()]


class EmbeddedRow(SegmentRow):
    """A segment and one of its embeddings (or, after the write stage, its acknowledgement)."""

    embedding_type: Annotated[str | None, pa.string()]
    vector: Annotated[list[float] | None, pa.list_(pa.float32())]
    input_tokens: Annotated[int | None, pa.int64()]
    truncated_char_length: Annotated[int | None, pa.int64()]
    # Accounting, carried by the first embedding row of a segment only (zeros elsewhere).
    bedrock_calls: Annotated[int | None, pa.int64()]
    throttles: Annotated[int | None, pa.int64()]
    retries: Annotated[int | None, pa.int64()]


class StoredPointRow(TypedDict):
    """One point as a vector store holds it."""

    point_id: Annotated[str, pa.string()]
    asset_id: Annotated[str | None, pa.string()]
    segment_index: Annotated[int | None, pa.int64()]
    embedding_type: Annotated[str | None, pa.string()]
    vector: Annotated[list[float] | None, pa.list_(pa.float32())]
    # The point's whole payload as a JSON object string.
    payload_json: Annotated[str | None, pa.string()]


class RowType:
    """Names and Arrow schema of one row type of the column table, and tables built from rows."""

    def __init__(self, typed: type) -> None:
        self.typed = typed
        self.name = typed.__name__
        hints = typing.get_type_hints(typed, include_extras=True)
        fields: list[pa.Field] = []
        for column, hint in hints.items():
            arrow = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, pa.DataType)]
            if not arrow:
                raise TypeError(f"{self.name}.{column} has no Arrow type annotation")
            fields.append(pa.field(column, arrow[0]))
        self.schema: pa.Schema = pa.schema(fields)
        self.names: tuple[str, ...] = tuple(self.schema.names)

    def __repr__(self) -> str:
        return f"RowType({self.name})"

    def table(self, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
        """A table with exactly this type's columns (keys a row lacks are null)."""
        return rows_to_table(rows, self.schema)

    def empty(self) -> pa.Table:
        return self.schema.empty_table()

    def missing(self, columns: Iterable[str]) -> list[str]:
        """This type's columns that ``columns`` lacks."""
        have = set(columns)
        return [c for c in self.names if c not in have]


ASSET = RowType(AssetRow)
SEGMENT = RowType(SegmentRow)
EMBEDDED = RowType(EmbeddedRow)
STORED_POINT = RowType(StoredPointRow)

# Derived views kept for the modules that need only names or a schema.
RECORD_COLUMNS = tuple(typing.get_type_hints(RecordRow))
ASSET_COLUMNS = ASSET.names
SEGMENT_COLUMNS = SEGMENT.names
EMBEDDED_COLUMNS = tuple(c for c in EMBEDDED.names if c not in SEGMENT.names)
POSITION_COLUMNS = ("page", "start_s", "end_s", "char_start", "char_end")
ASSET_SCHEMA = ASSET.schema
SEGMENT_SCHEMA = SEGMENT.schema
EMBEDDED_SCHEMA = EMBEDDED.schema


def rows_to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly ``schema``'s columns (missing keys are null)."""
    rows = list(rows)
    columns = {name: [r.get(name) for r in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


class MissingColumnsError(KeyError):
    """A stage received rows without the columns it needs (a programming error, not data)."""


def require_columns(row: Mapping[str, Any], needed: Iterable[str], stage: str) -> None:
    """Fail loudly when a stage is wired to rows that lack the columns it needs."""
    missing = [c for c in needed if c not in row]
    if missing:
        raise MissingColumnsError(f"stage {stage!r} needs columns {missing}; got {sorted(row)}")


def segment_row(asset: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    """A segment row for ``asset`` with every contract column present (unset ones are None)."""
    row: dict[str, Any] = dict.fromkeys(SEGMENT_COLUMNS)
    for c in RECORD_COLUMNS:
        row[c] = asset.get(c)
    unknown = set(fields) - set(SEGMENT_COLUMNS)
    if unknown:
        raise MissingColumnsError(f"unknown segment columns {sorted(unknown)}")
    row.update(fields)
    return row


def dead_letter_row(asset: Mapping[str, Any], error: RecordError) -> dict[str, Any]:
    """The segment row that records why ``asset`` (or the segment ``error.where`` names) failed.

    The one way a :class:`~pipelines.core.errors.RecordError` becomes a row: each stage calls it
    where it catches the error (the decode stage in ``decode_asset``, the embed stages per
    segment or asset, the write stage per refused point).
    """
    fields = dict(error.where)
    fields.setdefault("segment_index", -1)
    fields.setdefault("segment_count", 0)
    return segment_row(
        asset,
        error_stage=error.stage,
        error_code=error.code,
        error_message=error.message[:2000],
        **fields,
    )


def is_dead_letter(row: Mapping[str, Any]) -> bool:
    return row.get("error_code") is not None
