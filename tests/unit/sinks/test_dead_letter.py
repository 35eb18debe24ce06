"""The dead-letter file: always written, fixed schema."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.config.schema import PricesConfig
from pipelines.core import codes
from pipelines.core.errors import RecordError
from pipelines.core.ledger import TODO, RunLedger
from pipelines.core.rows import SEGMENT, dead_letter_row
from pipelines.sinks.dead_letter import DEAD_LETTER_SCHEMA, MAX_MESSAGE_CHARS, DeadLetterWriter


def test_empty_file_is_written_with_schema(tmp_path: Path) -> None:
    writer = DeadLetterWriter(tmp_path / "run")
    path = writer.close()
    assert path == str(tmp_path / "run" / "dead_letter.parquet")
    table = pq.read_table(path)
    assert table.num_rows == 0
    assert table.schema.equals(DEAD_LETTER_SCHEMA)


def test_rows_are_the_ledgers_dead_letters(tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path / "ledger.sqlite")
    ledger.plan_rows([(0, "a.pdf", "/x/a.pdf", "document", None, TODO, 0, None)])
    failed = dead_letter_row(
        {"asset_id": "a.pdf", "uri": "/x/a.pdf", "modality": "document"},
        RecordError("decode", codes.PDF_CORRUPT, "bad xref"),
    )
    ledger.account(SEGMENT.table([failed]))
    ledger.finalize(PricesConfig())
    with DeadLetterWriter(tmp_path / "dl.parquet") as writer:
        writer.add_many(ledger.dead_letters())
        writer.add_many(
            [
                {
                    "asset_id": "b.png",
                    "stage": "embed",
                    "error_code": codes.VALIDATION_EXCEPTION,
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
        "error_code": "pdf_corrupt",
        "message": "bad xref",
        "segment_index": -1,
        "asset_outcome": "dead_lettered",
    }
    assert rows[1]["stage"] == "embed"
    assert rows[1]["segment_index"] == 2
    assert len(rows[1]["message"]) == MAX_MESSAGE_CHARS
    assert rows[1]["uri"] is None


def test_refuses_rows_in_another_vocabulary(tmp_path: Path) -> None:
    writer = DeadLetterWriter(tmp_path)
    segment = dead_letter_row(
        {"asset_id": "a", "modality": "text"}, RecordError("decode", codes.EMPTY_TEXT, "blank")
    )
    with pytest.raises(ValueError, match="error_stage"):
        writer.add(segment)
    with pytest.raises(ValueError, match="missing"):
        writer.add({"asset_id": "a", "error_code": codes.EMPTY_TEXT})
    assert len(writer) == 0


def test_written_even_when_the_run_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), DeadLetterWriter(tmp_path) as writer:
        writer.add({"asset_id": "a", "stage": "write", "error_code": "empty_file", "message": "m"})
        raise RuntimeError("job failed")
    assert pq.read_table(tmp_path / "dead_letter.parquet").num_rows == 1


def test_rows_stream_in_groups_and_close_refuses_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pipelines.sinks.dead_letter.ROWS_PER_GROUP", 1)
    writer = DeadLetterWriter(tmp_path)
    writer.add({"asset_id": "a", "stage": "decode", "error_code": "empty_file", "message": "m"})
    # A row group is written, but the file appears only when it is complete.
    assert not (tmp_path / "dead_letter.parquet").exists()
    writer.add({"asset_id": "b", "stage": "decode", "error_code": "empty_file", "message": "m"})
    writer.close()
    assert pq.read_table(writer.path).column("asset_id").to_pylist() == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dead_letter.parquet"]
    with pytest.raises(RuntimeError, match="closed"):
        writer.add({"asset_id": "c"})
