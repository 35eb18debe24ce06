"""The dead-letter file: always written, fixed schema."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.core.rows import dead_letter_row
from pipelines.sinks.dead_letter import DEAD_LETTER_SCHEMA, MAX_MESSAGE_CHARS, DeadLetterWriter


def test_empty_file_is_written_with_schema(tmp_path: Path) -> None:
    writer = DeadLetterWriter(tmp_path / "run")
    path = writer.close()
    assert path == str(tmp_path / "run" / "dead_letter.parquet")
    table = pq.read_table(path)
    assert table.num_rows == 0
    assert table.schema.equals(DEAD_LETTER_SCHEMA)


def test_rows_from_segment_rows_and_plain_dicts(tmp_path: Path) -> None:
    asset = {"asset_id": "a.pdf", "uri": "/x/a.pdf", "modality": "document"}
    with DeadLetterWriter(tmp_path / "dl.parquet") as writer:
        writer.add(dead_letter_row(asset, "decode", "CorruptPdf", "bad xref"))
        writer.add_many(
            [
                {
                    "asset_id": "b.png",
                    "stage": "embed",
                    "error_code": "ValidationException",
                    "message": "x" * 5000,
                    "segment_index": 2,
                }
            ]
        )
        assert len(writer) == 2
    rows = pq.read_table(tmp_path / "dl.parquet").to_pylist()
    assert rows[0] == {
        "asset_id": "a.pdf",
        "uri": "/x/a.pdf",
        "modality": "document",
        "stage": "decode",
        "error_code": "CorruptPdf",
        "message": "bad xref",
        "segment_index": -1,
    }
    assert rows[1]["stage"] == "embed"
    assert rows[1]["segment_index"] == 2
    assert len(rows[1]["message"]) == MAX_MESSAGE_CHARS
    assert rows[1]["uri"] is None


def test_written_even_when_the_run_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), DeadLetterWriter(tmp_path) as writer:
        writer.add({"asset_id": "a", "stage": "write", "error_code": "E", "message": "m"})
        raise RuntimeError("job failed")
    assert pq.read_table(tmp_path / "dead_letter.parquet").num_rows == 1


def test_write_rewrites_and_close_refuses_more(tmp_path: Path) -> None:
    writer = DeadLetterWriter(tmp_path)
    writer.add({"asset_id": "a", "stage": "s", "error_code": "E", "message": "m"})
    writer.write()
    writer.add({"asset_id": "b", "stage": "s", "error_code": "E", "message": "m"})
    writer.close()
    assert pq.read_table(writer.path).column("asset_id").to_pylist() == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dead_letter.parquet"]
    with pytest.raises(RuntimeError, match="closed"):
        writer.add({"asset_id": "c"})
