"""The parallel-writer stage for a Qdrant server: writes, then acknowledges every row."""

from __future__ import annotations

import pyarrow as pa

from pipelines.config.schema import EmbeddingConfig, QdrantConfig, SegmentationConfig
from pipelines.core.rows import dead_letter_row, segment_row
from pipelines.core.schemas import EMBEDDED_SCHEMA, rows_to_table
from pipelines.sinks.qdrant_stage import QdrantWriteFn

ASSET = {
    "asset_id": "a1",
    "uri": "/x.png",
    "modality": "image",
    "content_version": "v1",
    "metadata": None,
    "label": None,
    "payload": None,
}


def _row(index: int, dim: int) -> dict[str, object]:
    row = segment_row(ASSET, segment_index=index, segment_count=3, input_kind="image")
    row.update(
        embedding_type="IMAGE",
        vector=[1.0] + [0.0] * (dim - 1),
        input_bytes=b"png bytes",
        bedrock_calls=1,
        throttles=0,
        retries=0,
    )
    return row


def _stage() -> QdrantWriteFn:
    # ":memory:" gives the stage its own store: enough to exercise write + acknowledgement.
    stage = QdrantWriteFn(
        QdrantConfig(path=":memory:", collection="c"),
        256,
        EmbeddingConfig(dimension=256),
        SegmentationConfig(),
    )
    stage.writer.ensure_collection()
    return stage


def test_acks_written_rows_and_turns_refused_rows_into_dead_letters() -> None:
    stage = _stage()
    dead = dead_letter_row(ASSET, "decode", "image_corrupt", "bad", segment_index=2)
    batch = rows_to_table([_row(0, 256), _row(1, 384), dead], EMBEDDED_SCHEMA)
    acks = stage(batch).to_pylist()

    assert [a["segment_index"] for a in acks] == [0, 1, 2]
    ok, refused, passed = acks
    assert ok["error_code"] is None and ok["vector"] is None and ok["input_bytes"] is None
    assert ok["bedrock_calls"] == 1  # accounting survives the write stage
    assert refused["error_stage"] == "write" and refused["error_code"] == "VectorDimensionMismatch"
    assert passed["error_code"] == "image_corrupt" and passed["error_stage"] == "decode"
    assert stage.writer.count() == 1


def test_output_schema_is_stable_for_an_all_dead_batch() -> None:
    stage = _stage()
    dead = dead_letter_row(ASSET, "decode", "empty_file", "zero bytes")
    out = stage(rows_to_table([dead], EMBEDDED_SCHEMA))
    assert isinstance(out, pa.Table) and out.schema == EMBEDDED_SCHEMA
