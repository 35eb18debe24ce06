"""Manifest reading and validation: every malformed case names its row and column."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.core.errors import ManifestError
from pipelines.core.manifest import (
    infer_modality,
    iter_asset_ids,
    iter_manifest,
    read_manifest,
    validate_manifest,
)
from pipelines.core.rows import ASSET_COLUMNS

# ---- malformed manifests ------------------------------------------------------------------

MALFORMED: list[tuple[str, dict[str, Any], int | None, str, str]] = [
    ("missing asset_id column", {"uri": ["a.png"]}, None, "asset_id", "missing"),
    ("null asset_id", {"asset_id": ["a", None], "uri": ["a.png", "b.png"]}, 1, "asset_id", "null"),
    (
        "empty asset_id",
        {"asset_id": ["a", "b", "  "], "uri": ["x.png"] * 3},
        2,
        "asset_id",
        "empty",
    ),
    (
        "duplicate asset_id",
        {"asset_id": ["a", "b", "c", "b"], "uri": ["x.png"] * 4},
        3,
        "asset_id",
        "rows 1 and 3",
    ),
    ("asset_id not string", {"asset_id": [1, 2], "uri": ["x.png"] * 2}, 0, "asset_id", "int64"),
    (
        "uri and text both null",
        {"asset_id": ["a", "b"], "uri": ["x.png", None], "text": [None, None]},
        1,
        "uri",
        "neither",
    ),
    (
        "unknown modality",
        {"asset_id": ["a", "b"], "uri": ["x.png"] * 2, "modality": ["image", "hologram"]},
        1,
        "modality",
        "hologram",
    ),
    (
        "modality not inferable",
        {"asset_id": ["a", "b"], "uri": ["x.png", "s3://b/blob.xyz"]},
        1,
        "modality",
        "blob.xyz",
    ),
    (
        "metadata not an object",
        {"asset_id": ["a", "b"], "uri": ["x.png"] * 2, "metadata": ['{"k": 1}', "[1, 2]"]},
        1,
        "metadata",
        "JSON object",
    ),
    (
        "metadata not JSON",
        {"asset_id": ["a", "b"], "uri": ["x.png"] * 2, "metadata": ["{broken", None]},
        0,
        "metadata",
        "JSON object",
    ),
    (
        "metadata wrong type",
        {"asset_id": ["a"], "uri": ["x.png"], "metadata": [3]},
        0,
        "metadata",
        "expected string",
    ),
    (
        "unsupported scheme",
        {"asset_id": ["a", "b"], "uri": ["x.png", "https://example.com/y.png"]},
        1,
        "uri",
        "unsupported",
    ),
    ("s3 uri without key", {"asset_id": ["a"], "uri": ["s3://bucket"]}, 0, "uri", "unsupported"),
]


@pytest.mark.parametrize(
    ("columns", "row", "column", "needle"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_manifest_names_row_and_column(
    columns: dict[str, Any], row: int | None, column: str, needle: str
) -> None:
    with pytest.raises(ManifestError) as info:
        validate_manifest(pa.table(columns))
    err = info.value
    assert err.row == row
    assert err.column == column
    assert needle in str(err)
    assert f"column {column!r}" in str(err)
    if row is not None:
        assert f"row {row}" in str(err)
        assert "0-based" in str(err)


def test_all_null_text_column_is_fine() -> None:
    # A column of nulls has type null in Arrow: it is accepted as an empty string column.
    out = validate_manifest(pa.table({"asset_id": ["a"], "uri": ["x.png"], "text": [None]}))
    assert out.column("text").to_pylist() == [None]


def test_wrong_type_names_first_non_null_row() -> None:
    table = pa.table({"asset_id": ["a", "b", "c"], "uri": ["x.png"] * 3, "text": [None, 5, 6]})
    with pytest.raises(ManifestError) as info:
        validate_manifest(table)
    assert (info.value.row, info.value.column) == (1, "text")


def test_first_offending_row_wins_across_checks() -> None:
    table = pa.table(
        {
            "asset_id": ["a", "b", "c", "d", "a"],
            "uri": ["x.png", "y.png", "ftp://h/z.png", "w.png", "v.png"],
        }
    )
    with pytest.raises(ManifestError) as info:
        validate_manifest(table)
    assert (info.value.row, info.value.column) == (2, "uri")


def test_duplicate_names_first_occurrence_and_first_repeat() -> None:
    ids = [f"id{i}" for i in range(1000)]
    ids[700] = "id5"
    ids[900] = "id3"
    table = pa.table({"asset_id": ids, "uri": ["x.png"] * 1000})
    with pytest.raises(ManifestError, match="rows 5 and 700") as info:
        validate_manifest(table)
    assert info.value.row == 700


# ---- normalisation and inference -----------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "modality"),
    [
        ("a/b/report.PDF", "document"),
        ("s3://bucket/img/cat.jpeg", "image"),
        ("file:///data/x.webp", "image"),
        ("clip.mp4", "video"),
        ("song.m4a", "audio"),
        ("notes.md", "text"),
        ("voice.ogg", "audio"),
        ("archive.tar.gz", None),
        ("noext", None),
        (None, None),
    ],
)
def test_infer_modality(uri: str | None, modality: str | None) -> None:
    assert infer_modality(uri) == modality


def test_validate_normalises_to_asset_columns() -> None:
    table = pa.table(
        {
            "asset_id": pa.array(["a", "b", "c", "d"]).dictionary_encode(),
            "uri": ["s3://bucket/x.PNG", None, "/data/song.mp3", "file:///data/odd.bin"],
            "modality": [None, None, " Audio ", "video"],
            "text": [None, "inline text", None, None],
            "content_version": pa.array([1, 2, 3, None], pa.int64()),
            "label": pa.array([7, None, 9, None], pa.int32()),
        }
    )
    out = validate_manifest(table)
    assert out.schema == pa.schema([(c, pa.string()) for c in ASSET_COLUMNS])
    assert out.column("modality").to_pylist() == ["image", "text", "audio", "video"]
    assert out.column("content_version").to_pylist() == ["1", "2", "3", None]
    assert out.column("label").to_pylist() == ["7", None, "9", None]
    assert out.column("payload").to_pylist() == [None] * 4


def test_text_with_unknown_extension_uri_is_text() -> None:
    out = validate_manifest(pa.table({"asset_id": ["a"], "uri": ["x.unknown"], "text": ["hi"]}))
    assert out.column("modality").to_pylist() == ["text"]


def test_metadata_struct_column_becomes_json() -> None:
    meta = pa.array([{"k": 1, "tags": ["x"]}, None])
    out = validate_manifest(
        pa.table({"asset_id": ["a", "b"], "uri": ["x.png"] * 2, "metadata": meta})
    )
    first, second = out.column("metadata").to_pylist()
    assert json.loads(first) == {"k": 1, "tags": ["x"]}
    assert second is None


def test_unknown_columns_become_payload_json() -> None:
    weird = 'quote " back \\ nl \n tab \t unicode é ☃'
    table = pa.table(
        {
            "asset_id": ["a", "b", "c"],
            "uri": ["x.png"] * 3,
            "year": pa.array([2020, None, 2022], pa.int64()),
            "score": [1.0, float("nan"), 2.5],
            "flag": [True, None, False],
            "note": [weird, None, "ctrl \x01 char"],
            "when": [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), None, None],
            "tags": [["a", "b"], None, []],
            "blob": [b"\x00\x01", None, None],
            "cat": pa.array(["x", None, "y"]).dictionary_encode(),
        }
    )
    payloads = validate_manifest(table).column("payload").to_pylist()
    first = json.loads(payloads[0])
    assert first == {
        "year": 2020,
        "score": 1.0,
        "flag": True,
        "note": weird,
        "when": "2024-01-02T03:04:05+00:00",
        "tags": ["a", "b"],
        "blob": "AAE=",
        "cat": "x",
    }
    assert isinstance(first["score"], float)
    # Row 1: every unknown value is null or NaN -> no payload at all.
    assert payloads[1] is None
    assert json.loads(payloads[2]) == {
        "year": 2022,
        "score": 2.5,
        "flag": False,
        "note": "ctrl \x01 char",
        "tags": [],
        "cat": "y",
    }


def test_empty_manifest_is_valid() -> None:
    out = validate_manifest(pa.table({"asset_id": pa.array([], pa.string())}))
    assert out.num_rows == 0
    assert out.column_names == list(ASSET_COLUMNS)


# ---- reading ---------------------------------------------------------------------------------


def _write(table: pa.Table, path: str) -> str:
    pq.write_table(table, path)
    return path


def test_read_local_path_and_file_uri(tmp_path: Any) -> None:
    path = _write(pa.table({"asset_id": ["a"], "uri": ["x.png"]}), str(tmp_path / "m.parquet"))
    assert read_manifest(path).num_rows == 1
    assert read_manifest(f"file://{path}").num_rows == 1


def test_read_missing_file_and_bad_scheme(tmp_path: Any) -> None:
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest(str(tmp_path / "nope.parquet"))
    with pytest.raises(ManifestError, match="unsupported"):
        read_manifest("gs://bucket/m.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(ManifestError, match="Parquet"):
        read_manifest(str(bad))


# ``s3_endpoint``: the session's local S3 (tests/conftest.py).


def test_read_from_s3(s3_endpoint: str, tmp_path: Any) -> None:
    import boto3

    path = _write(
        pa.table({"asset_id": ["a", "b"], "uri": ["s3://corpus/a.png", None], "text": [None, "t"]}),
        str(tmp_path / "m.parquet"),
    )
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="manifests")
    s3.upload_file(path, "manifests", "runs/m.parquet")
    table = read_manifest("s3://manifests/runs/m.parquet", s3_endpoint_url=s3_endpoint)
    out = validate_manifest(table)
    assert out.column("modality").to_pylist() == ["image", "text"]
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest("s3://manifests/runs/missing.parquet", s3_endpoint_url=s3_endpoint)


def test_validate_is_fast_enough_for_large_manifests() -> None:
    n = 200_000
    table = pa.table(
        {
            "asset_id": [f"id-{i}" for i in range(n)],
            "uri": [f"s3://b/{i}.jpg" for i in range(n)],
            "metadata": [f'{{"k": {i % 50}}}' for i in range(n)],
            "size": list(range(n)),
        }
    )
    t0 = time.perf_counter()
    out = validate_manifest(table)
    # ~1 s per million rows measured on a 2-core box; generous bound against slow CI.
    assert time.perf_counter() - t0 < 5.0
    assert out.num_rows == n


# ---- streaming ---------------------------------------------------------------------------------


def test_a_streamed_manifest_names_rows_by_their_place_in_the_file(tmp_path: Any) -> None:
    ids = [f"a{i}" for i in range(10)]
    uris = ["x.png"] * 10
    uris[7] = "ftp://host/x.png"
    path = _write(pa.table({"asset_id": ids, "uri": uris}), str(tmp_path / "m.parquet"))
    batches = iter_manifest(path, batch_rows=3)
    assert [off for off, _ in itertools.islice(batches, 2)] == [0, 3]
    with pytest.raises(ManifestError) as err:
        list(iter_manifest(path, batch_rows=3))
    assert (err.value.row, err.value.column) == (7, "uri")


def test_a_streamed_manifest_reads_a_folder_and_only_the_ids_when_asked(tmp_path: Any) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    _write(pa.table({"asset_id": ["a", "b"], "text": ["x", "y"]}), str(folder / "0.parquet"))
    _write(pa.table({"asset_id": ["c"], "text": ["z"]}), str(folder / "1.parquet"))
    tables = [t for _, t in iter_manifest(str(folder), batch_rows=2)]
    assert [t.column("asset_id").to_pylist() for t in tables] == [["a", "b"], ["c"]]
    assert list(iter_asset_ids(str(folder))) == ["a", "b", "c"]
    empty = _write(pa.table({"asset_id": pa.array([], pa.string())}), str(tmp_path / "e.parquet"))
    assert [t.num_rows for _, t in iter_manifest(empty)] == [0]
