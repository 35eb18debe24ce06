"""Reading and validating the Parquet manifest (one row per asset).

The manifest contract is in ``docs/architecture.md``. :func:`validate_manifest` normalises any
accepted manifest to :data:`pipelines.core.rows.ASSET_COLUMNS`, all of type ``string``:

- ``modality`` is lower-cased; when null it is inferred from the ``uri`` extension, or set to
  ``text`` when only ``text`` is given;
- ``content_version`` and ``label`` may be integer columns in the file; they become strings;
- ``metadata`` may be a JSON-object string column, or a struct/map column (converted to JSON);
- every column outside the contract is kept: ``payload`` is a JSON object string of that row's
  non-null unknown values (dates as ISO strings, bytes as base64, NaN/inf as null), or null when the
  row has none.

A malformed manifest fails before any work with :class:`~pipelines.core.errors.ManifestError`
naming the row (0-based position in the manifest file) and the column. Checks run column-at-a-time
with pyarrow/numpy; only ``metadata`` needs JSON parsing, done once per distinct value. When several
rows are bad, the error names the first one (lowest row number).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.core.errors import ManifestError
from pipelines.core.rows import ASSET_COLUMNS
from pipelines.modalities import current, names

ROW_NOTE = "(rows are 0-based positions in the manifest file)"

# Columns whose values must be strings; content_version and label also accept integers.
_STRING_COLUMNS = ("asset_id", "uri", "modality", "text")
_STRING_OR_INT_COLUMNS = ("content_version", "label")
_URI_SCHEME_RE = r"^[A-Za-z][A-Za-z0-9+.\-]*://"
_SUPPORTED_URI_RE = r"^(s3://[^/]+/.+|file://.+)$"


def infer_modality(uri: str | None) -> str | None:
    """The modality implied by ``uri``'s file extension, or None when it is unknown."""
    if not uri:
        return None
    modality = current().for_path(urlparse(uri).path if "://" in uri else uri)
    return modality.name if modality is not None else None


# --------------------------------------------------------------------------------------------
# Reading


def resolve_filesystem(uri: str, s3_endpoint_url: str | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path for a local path, ``file://`` URI or ``s3://`` URI.

    For ``s3://`` the standard AWS credential chain applies; ``s3_endpoint_url`` points at a
    compatible endpoint (moto locally), over plain HTTP when the URL says ``http://``.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"s3 URI without a bucket: {uri!r}")
        kwargs: dict[str, Any] = {}
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            kwargs["region"] = region
        if s3_endpoint_url:
            endpoint = urlparse(s3_endpoint_url)
            kwargs["endpoint_override"] = endpoint.netloc or endpoint.path
            kwargs["scheme"] = endpoint.scheme or "https"
            kwargs.setdefault("region", "us-east-1")
        return pafs.S3FileSystem(**kwargs), f"{parsed.netloc}/{parsed.path.lstrip('/')}".rstrip("/")
    if parsed.scheme == "file":
        return pafs.LocalFileSystem(), unquote(parsed.path)
    if "://" in uri:
        raise ValueError(f"unsupported URI scheme {parsed.scheme!r} in {uri!r}")
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def read_manifest(uri: str, s3_endpoint_url: str | None = None) -> pa.Table:
    """Read the manifest Parquet file (or folder of files) at a local path, ``file://`` or ``s3://``.

    The table is returned as stored; call :func:`validate_manifest` to check and normalise it.
    """
    try:
        fs, path = resolve_filesystem(uri, s3_endpoint_url)
    except ValueError as exc:
        raise ManifestError(str(exc)) from exc
    try:
        return pq.read_table(path, filesystem=fs)
    except FileNotFoundError as exc:
        raise ManifestError(f"no manifest at {uri!r}") from exc
    except (OSError, pa.ArrowInvalid) as exc:
        raise ManifestError(f"cannot read the manifest at {uri!r} as Parquet: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Validation


class _FirstError:
    """Keeps the error with the lowest row number among the checks that found one."""

    def __init__(self, first_row: int = 0) -> None:
        # Position in the file of the table's first row (a manifest read in batches).
        self.first_row = first_row
        self.row: int | None = None
        self.column: str | None = None
        self.message = ""

    def offer(self, row: int, column: str, message: str) -> None:
        row += self.first_row
        if self.row is None or row < self.row:
            self.row, self.column, self.message = row, column, message

    def raise_if_any(self) -> None:
        if self.row is not None:
            raise ManifestError(f"{self.message} {ROW_NOTE}", row=self.row, column=self.column)


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int | None:
    """Index of the first true value of a boolean array (nulls count as false)."""
    arr = pc.fill_null(mask, False)
    if not pc.any(arr).as_py():
        return None
    return int(pc.index(arr, True).as_py())


def _first_valid_row(column: pa.ChunkedArray) -> int:
    row = _first_true(pc.is_valid(column))
    return 0 if row is None else row


def _as_string(table: pa.Table, name: str, allow_int: bool, first_row: int = 0) -> pa.ChunkedArray:
    """The column as ``string``, or a ManifestError naming its first non-null row."""
    col = table.column(name)
    typ = col.type
    if pa.types.is_dictionary(typ):
        col = col.cast(typ.value_type)
        typ = col.type
    ok = (
        pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
        or pa.types.is_string_view(typ)
        or pa.types.is_null(typ)
        or (allow_int and pa.types.is_integer(typ))
    )
    if not ok:
        expected = "string or integer" if allow_int else "string"
        raise ManifestError(
            f"column type is {typ}, expected {expected} {ROW_NOTE}",
            row=_first_valid_row(col) + first_row,
            column=name,
        )
    return col.cast(pa.string())


def _blank(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where the value is null or only whitespace."""
    empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0)
    return pc.or_kleene(pc.is_null(col), pc.fill_null(empty, True))


def _check_duplicates(asset_id: pa.ChunkedArray, errors: _FirstError) -> None:
    encoded = pc.dictionary_encode(asset_id).combine_chunks()
    if len(encoded.dictionary) == len(asset_id):
        return
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    _, first_index = np.unique(codes, return_index=True)
    # dictionary codes are assigned in order of first appearance, so first_index[c] is the row
    # where asset_id value c first occurs; every other row with code c is a duplicate.
    first_of_row = first_index[codes]
    dup_rows = np.nonzero(first_of_row != np.arange(len(codes)))[0]
    row = int(dup_rows[0])
    first = int(first_of_row[row])
    errors.offer(
        row,
        "asset_id",
        f"duplicate asset_id {asset_id[row].as_py()!r}: rows {first + errors.first_row} and "
        f"{row + errors.first_row} have the same id",
    )


def _infer_from_extension(uri: pa.ChunkedArray) -> pa.ChunkedArray:
    path = pc.replace_substring_regex(uri, r"[?#].*$", "")
    ext = pc.struct_field(pc.extract_regex(path, r"\.(?P<ext>[A-Za-z0-9]+)$"), "ext")
    ext = pc.utf8_lower(ext)
    extensions = current().extension_map()
    keys = pa.array(list(extensions), pa.string())
    values = pa.array(list(extensions.values()), pa.string())
    return pc.take(values, pc.index_in(ext, value_set=keys))


def _metadata_column(table: pa.Table, errors: _FirstError) -> pa.ChunkedArray:
    col = table.column("metadata")
    typ = col.type
    if pa.types.is_struct(typ) or pa.types.is_map(typ):
        dumped: list[str | None] = []
        for value in col.to_pylist():
            if value is None:
                dumped.append(None)
                continue
            obj = dict(value) if isinstance(value, list) else value  # map -> list of pairs
            dumped.append(json.dumps(_json_safe(obj), ensure_ascii=False))
        return pa.chunked_array([pa.array(dumped, pa.string())])
    col = _as_string(table, "metadata", allow_int=False, first_row=errors.first_row)
    # Parse each distinct value once: manifests often repeat the same metadata.
    encoded = pc.dictionary_encode(col).combine_chunks()
    bad_codes: list[int] = []
    for code, text in enumerate(encoded.dictionary.to_pylist()):
        try:
            parsed = json.loads(text)
        except ValueError:
            bad_codes.append(code)
            continue
        if not isinstance(parsed, dict):
            bad_codes.append(code)
    if bad_codes:
        mask = pc.is_in(encoded.indices, value_set=pa.array(bad_codes, encoded.indices.type))
        row = _first_true(mask)
        if row is not None:
            errors.offer(
                row,
                "metadata",
                f"metadata must be a JSON object, got {col[row].as_py()[:200]!r}",
            )
    return col


def _json_safe(value: Any) -> Any:
    """A JSON-serialisable version of a value from ``pyarrow``'s ``to_pylist``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "item"):  # numpy scalar
        return _json_safe(value.item())
    return str(value)


_JSON_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


def _json_values(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Each value of ``col`` as a JSON text (null where the value is null or not finite).

    Strings, integers, booleans and floats are encoded with pyarrow kernels (a 1M-row manifest
    stays fast); other types go through :func:`_json_safe` one value at a time.
    """
    typ = col.type
    if pa.types.is_dictionary(typ):
        col = col.cast(typ.value_type)
        typ = col.type
    if pa.types.is_integer(typ):
        return col.cast(pa.string())
    if pa.types.is_boolean(typ):
        return pc.if_else(col, pa.scalar("true"), pa.scalar("false"))
    if pa.types.is_floating(typ):
        finite = pc.is_finite(col)
        text = col.cast(pa.string())
        # 1.0 casts to "1": keep it a float for JSON readers.
        text = pc.if_else(
            pc.match_substring_regex(text, r"^-?[0-9]+$"),
            pc.binary_join_element_wise(text, pa.scalar(".0"), pa.scalar("")),
            text,
        )
        return pc.if_else(finite, text, pa.scalar(None, pa.string()))
    if (pa.types.is_string(typ) or pa.types.is_large_string(typ)) and not pc.any(
        pc.match_substring_regex(col, r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
    ).as_py():
        text = col.cast(pa.string())
        for old, new in _JSON_ESCAPES:
            text = pc.replace_substring(text, old, new)
        return pc.binary_join_element_wise(pa.scalar('"'), text, pa.scalar('"'), pa.scalar(""))
    values = [
        None if v is None else json.dumps(_json_safe(v), ensure_ascii=False, allow_nan=False)
        for v in col.to_pylist()
    ]
    return pa.chunked_array([pa.array(values, pa.string())])


def _payload_column(table: pa.Table, unknown: list[str]) -> pa.ChunkedArray:
    """Per row, a JSON object of the non-null values of the ``unknown`` columns (null if none)."""
    n = table.num_rows
    if not unknown:
        return pa.chunked_array([pa.nulls(n, pa.string())])
    # Each fragment is ', "key": value' or "" (null value); the row's object is their
    # concatenation without the first ", ". (binary_join_element_wise with null_handling="skip"
    # drops all-null rows in pyarrow 26, so nulls are filled instead.)
    fragments = []
    any_set: Any = None
    for name in unknown:
        key = pa.scalar(", " + json.dumps(name, ensure_ascii=False) + ": ")
        values = _json_values(table.column(name))
        valid = pc.is_valid(values)
        any_set = valid if any_set is None else pc.or_(any_set, valid)
        fragment = pc.fill_null(pc.binary_join_element_wise(key, values, pa.scalar("")), "")
        fragments.append(fragment)
    body = pc.utf8_slice_codeunits(pc.binary_join_element_wise(*fragments, pa.scalar("")), start=2)
    obj = pc.binary_join_element_wise(pa.scalar("{"), body, pa.scalar("}"), pa.scalar(""))
    return pc.if_else(any_set, obj, pa.scalar(None, pa.string()))


def validate_manifest(table: pa.Table, first_row: int = 0) -> pa.Table:
    """Check a manifest table and normalise it to ``ASSET_COLUMNS`` (all ``string``).

    Raises :class:`ManifestError` naming the row (0-based position in the file) and column of the
    first problem: missing ``asset_id`` column, null/empty or duplicate ``asset_id``, neither
    ``uri`` nor ``text`` set, unsupported ``uri`` scheme, unknown or uninferable ``modality``,
    ``metadata`` that is not a JSON object, or a column of the wrong type. ``first_row``: the
    position in the file of the table's first row (a manifest validated in batches).
    """
    if "asset_id" not in table.column_names:
        raise ManifestError(
            f"required column is missing (columns present: {table.column_names})",
            column="asset_id",
        )
    n = table.num_rows

    def string_column(name: str, allow_int: bool = False) -> pa.ChunkedArray:
        if name not in table.column_names:
            return pa.chunked_array([pa.nulls(n, pa.string())])
        return _as_string(table, name, allow_int, first_row)

    # Types first: every later check relies on them.
    cols = {name: string_column(name) for name in _STRING_COLUMNS}
    cols.update({name: string_column(name, allow_int=True) for name in _STRING_OR_INT_COLUMNS})
    errors = _FirstError(first_row)

    asset_id = cols["asset_id"]
    row = _first_true(_blank(asset_id))
    if row is not None:
        errors.offer(row, "asset_id", "asset_id is null or empty")
    else:
        _check_duplicates(asset_id, errors)

    uri = cols["uri"]
    uri_blank = _blank(uri)
    text_blank = _blank(cols["text"])
    row = _first_true(pc.and_(uri_blank, text_blank))
    if row is not None:
        errors.offer(row, "uri", "neither 'uri' nor 'text' is set: nothing to embed")

    has_scheme = pc.match_substring_regex(uri, _URI_SCHEME_RE)
    supported = pc.match_substring_regex(uri, _SUPPORTED_URI_RE)
    row = _first_true(pc.and_(has_scheme, pc.invert(supported)))
    if row is not None:
        errors.offer(
            row,
            "uri",
            f"unsupported uri {uri[row].as_py()!r}: use a local path, file:// or s3://bucket/key",
        )

    modality = pc.utf8_lower(pc.utf8_trim_whitespace(cols["modality"]))
    modality = pc.if_else(pc.equal(modality, ""), pa.scalar(None, pa.string()), modality)
    modalities = names()
    known = pc.is_in(modality, value_set=pa.array(modalities, pa.string()))
    row = _first_true(pc.and_(pc.is_valid(modality), pc.invert(known)))
    if row is not None:
        errors.offer(
            row,
            "modality",
            f"unknown modality {cols['modality'][row].as_py()!r}; expected one of {modalities}",
        )
    from_uri = _infer_from_extension(uri)
    text_only = pc.and_(uri_blank, pc.invert(text_blank))
    inferred = pc.if_else(text_only, pa.scalar("text"), from_uri)
    # A uri with an unknown extension but inline text is embedded as text.
    inferred = pc.if_else(
        pc.and_(pc.is_null(inferred), pc.invert(text_blank)), pa.scalar("text"), inferred
    )
    modality = pc.coalesce(modality, inferred)
    row = _first_true(pc.and_(pc.is_null(modality), pc.invert(uri_blank)))
    if row is not None:
        errors.offer(
            row,
            "modality",
            f"cannot infer the modality of {uri[row].as_py()!r} from its extension; "
            "set the 'modality' column",
        )

    metadata = (
        _metadata_column(table, errors)
        if "metadata" in table.column_names
        else pa.chunked_array([pa.nulls(n, pa.string())])
    )
    errors.raise_if_any()

    unknown = [c for c in table.column_names if c not in ASSET_COLUMNS]
    if "payload" in table.column_names:
        # A user column named "payload" is not ours: keep it as an ordinary unknown column.
        unknown.append("payload")
    payload = _payload_column(table, unknown)
    out = {
        "asset_id": asset_id,
        "uri": pc.if_else(uri_blank, pa.scalar(None, pa.string()), uri),
        "modality": modality,
        "text": cols["text"],
        "content_version": cols["content_version"],
        "metadata": metadata,
        "label": cols["label"],
        "payload": payload,
    }
    return pa.table(
        {name: out[name] for name in ASSET_COLUMNS},
        schema=pa.schema([(name, pa.string()) for name in ASSET_COLUMNS]),
    )


def load_manifest(uri: str, s3_endpoint_url: str | None = None) -> pa.Table:
    """:func:`read_manifest` then :func:`validate_manifest` (the whole manifest in memory: small
    manifests and tests; jobs stream it with :func:`iter_manifest`)."""
    return validate_manifest(read_manifest(uri, s3_endpoint_url))


BATCH_ROWS = 65_536


def _batches(
    uri: str, s3_endpoint_url: str | None, batch_rows: int, columns: list[str] | None = None
) -> Iterator[pa.Table]:
    """The manifest file (or folder of files) as tables of about ``batch_rows`` rows, in order."""
    import pyarrow.dataset as pads

    try:
        fs, path = resolve_filesystem(uri, s3_endpoint_url)
    except ValueError as exc:
        raise ManifestError(str(exc)) from exc
    try:
        dataset = pads.dataset(path, filesystem=fs, format="parquet")
        if columns is not None:
            columns = [c for c in columns if c in dataset.schema.names]
        schema = (
            dataset.schema
            if columns is None
            else pa.schema([dataset.schema.field(c) for c in columns])
        )
        pending: list[pa.Table] = []
        rows, given = 0, False
        # File by file, row group by row group (a dataset scan would pre-buffer a whole file
        # while the caller works through its batches: memory in the size of the manifest).
        for file in dataset.files:
            with fs.open_input_file(file) as handle, pq.ParquetFile(handle) as parquet:
                names = parquet.schema_arrow.names
                read = None if columns is None else [c for c in columns if c in names]
                for group in range(parquet.num_row_groups):
                    for batch in parquet.iter_batches(
                        batch_size=batch_rows, row_groups=[group], columns=read, use_threads=False
                    ):
                        table = _conform(pa.Table.from_batches([batch]), schema)
                        pending.append(table)
                        rows += table.num_rows
                        if rows >= batch_rows:
                            yield pa.concat_tables(pending)
                            pending, rows, given = [], 0, True
        if pending or not given:
            # An empty manifest is still one (empty) table: its columns are checked.
            yield pa.concat_tables(pending) if pending else schema.empty_table()
    except FileNotFoundError as exc:
        raise ManifestError(f"no manifest at {uri!r}") from exc
    except (OSError, pa.ArrowInvalid) as exc:
        raise ManifestError(f"cannot read the manifest at {uri!r} as Parquet: {exc}") from exc


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with the dataset's columns and types (a file may lack a column: nulls)."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def iter_manifest(
    uri: str, s3_endpoint_url: str | None = None, batch_rows: int | None = None
) -> Iterator[tuple[int, pa.Table]]:
    """The manifest, validated batch by batch: ``(position of the batch's first row, rows)``.

    Memory is bounded by the batch, whatever the manifest's size. Each batch is checked as
    :func:`validate_manifest` checks a whole table, with errors naming the row's position in the
    file; an ``asset_id`` repeated in two batches is for the caller to find (the run ledger does).
    """
    offset = 0
    for table in _batches(uri, s3_endpoint_url, batch_rows or BATCH_ROWS):
        yield offset, validate_manifest(table, first_row=offset)
        offset += table.num_rows


def iter_asset_ids(uri: str, s3_endpoint_url: str | None = None) -> Iterator[str]:
    """Every ``asset_id`` of the manifest, streamed (only that column is read)."""
    for table in _batches(uri, s3_endpoint_url, BATCH_ROWS, columns=["asset_id"]):
        if "asset_id" in table.column_names:
            yield from table.column("asset_id").cast(pa.string()).to_pylist()
