"""Parallel writers for a Qdrant server: a Ray Data actor stage that upserts and acknowledges.

Against a server (``qdrant.url``) the write stage runs as ``qdrant.writers`` actors, each with its
own client, so that upserts from many nodes go straight to Qdrant instead of through the driver.
Each actor returns one slim *acknowledgement* row per input row (the vector and media bytes
dropped): written rows unchanged, refused rows as dead letters with ``error_stage="write"``. The
driver feeds the acknowledgements to its ledger exactly as it does for its own writes in embedded
mode, where the local store's folder lock allows only one writer process.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pipelines.config.schema import EmbeddingConfig, QdrantConfig, SegmentationConfig
from pipelines.core.rows import is_dead_letter
from pipelines.core.schemas import EMBEDDED_SCHEMA, rows_to_table


class QdrantWriteFn:
    """Ray Data callable class: embedded rows in, acknowledgement rows out."""

    def __init__(
        self,
        qdrant: QdrantConfig,
        dimension: int,
        embedding: EmbeddingConfig,
        segmentation: SegmentationConfig,
    ) -> None:
        from pipelines.sinks.qdrant_writer import QdrantWriter

        self.writer = QdrantWriter(
            qdrant, dimension, embedding=embedding, segmentation=segmentation
        ).open()

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        result = self.writer.write([r for r in rows if not is_dead_letter(r)])
        refused = {
            (r["asset_id"], r.get("segment_index"), r.get("embedding_type")): r
            for r in result.rejected
        }
        acks: list[dict[str, Any]] = []
        for r in rows:
            ack = dict(r)
            ack["vector"] = None
            ack["input_bytes"] = None
            bad = refused.get((r["asset_id"], r.get("segment_index"), r.get("embedding_type")))
            if bad is not None and not is_dead_letter(r):
                ack.update(
                    error_stage=bad.get("error_stage") or "write",
                    error_code=bad.get("error_code") or "rejected",
                    error_message=bad.get("error_message") or "",
                )
            acks.append(ack)
        return rows_to_table(acks, EMBEDDED_SCHEMA)

    def __del__(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()
