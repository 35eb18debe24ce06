"""The write stage: writes through a store, then acknowledges every row."""

from __future__ import annotations

import pyarrow as pa

from pipelines.config.schema import EmbeddingConfig, QdrantConfig, SegmentationConfig
from pipelines.core.errors import RecordError
from pipelines.core.rows import EMBEDDED, dead_letter_row, segment_row
from pipelines.stages.write import WriteStage
from pipelines.stores.qdrant import QdrantStore

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


def _store(url: str | None = None) -> QdrantStore:
    cfg = (
        QdrantConfig(url=url, path=None, collection="c")
        if url
        else QdrantConfig(path=":memory:", collection="c")
    )
    return QdrantStore(
        cfg, 256, embedding=EmbeddingConfig(dimension=256), segmentation=SegmentationConfig()
    )


def _stage() -> WriteStage:
    # ":memory:" gives the stage its own store: enough to exercise write + acknowledgement.
    store = _store()
    store.ensure_collection()
    stage = WriteStage(store)
    stage.setup()
    return stage


def test_acks_written_rows_and_turns_refused_rows_into_dead_letters() -> None:
    stage = _stage()
    dead = dead_letter_row(ASSET, RecordError("decode", "image_corrupt", "bad", segment_index=2))
    batch = EMBEDDED.table([_row(0, 256), _row(1, 384), dead])
    out = stage.process(batch)
    assert isinstance(out, pa.Table)
    acks = out.to_pylist()

    assert [a["segment_index"] for a in acks] == [0, 1, 2]
    ok, refused, passed = acks
    assert ok["error_code"] is None and ok["vector"] is None and ok["input_bytes"] is None
    assert ok["bedrock_calls"] == 1  # accounting survives the write stage
    assert refused["error_stage"] == "write" and refused["error_code"] == "dimension_mismatch"
    assert passed["error_code"] == "image_corrupt" and passed["error_stage"] == "decode"
    assert stage.store.count() == 1


def test_output_schema_is_stable_for_an_all_dead_batch() -> None:
    stage = _stage()
    dead = dead_letter_row(ASSET, RecordError("decode", "empty_file", "zero bytes"))
    out = stage.process(EMBEDDED.table([dead]))
    assert isinstance(out, pa.Table) and out.schema == EMBEDDED.schema


def test_placement_follows_the_store() -> None:
    # The embedded store locks its folder: written from the driver. A server: parallel actors.
    assert WriteStage(_store()).resources.on_driver
    server = WriteStage(_store("http://qdrant.invalid:6333"))
    assert server.resources.actor and not server.resources.on_driver
