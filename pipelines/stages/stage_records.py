"""The batch record stage: segment rows in, batch records out (``bedrock.mode=batch``).

Each decoded segment becomes one record of a batch inference job: its ``recordId`` (from the
asset id, content version and segment index: :func:`pipelines.bedrock.batch.record_id`) and one
JSONL line ``{"recordId", "modelInput"}`` whose ``modelInput`` is exactly the ``InvokeModel``
body the on-demand embed stage would send. The segment's own columns travel on (media bytes
dropped: the line holds them), so the driver can map each output record back to its asset and
segment, and write it with the on-demand path's point id and payload. A segment whose request
cannot be built is a dead letter here, as it would be in the embed stage.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import pyarrow as pa

from pipelines.config.schema import EmbeddingConfig
from pipelines.core.rows import SEGMENT, SEGMENT_COLUMNS, RowType, SegmentRow, is_dead_letter
from pipelines.core.stage import Resources, Stage
from pipelines.modalities import Registry, current


class BatchRecordRow(SegmentRow):
    """A segment and its batch record (``record_json`` is the JSONL line, without newline)."""

    record_id: Annotated[str | None, pa.string()]
    record_json: Annotated[str | None, pa.large_string()]


BATCH_RECORD = RowType(BatchRecordRow)


class BatchRecordStage(Stage):
    """Segment rows in, batch records out (see the module docstring). Runs in tasks: building
    a request is CPU work (base64 of the media) and needs no client."""

    name = "batch_records"
    takes = SEGMENT
    gives = BATCH_RECORD

    def __init__(
        self,
        embedding: EmbeddingConfig,
        *,
        resources: Resources | None = None,
        modalities: Registry | None = None,
    ) -> None:
        self.embedding = embedding
        self.modalities = modalities or current()
        self.resources = resources or Resources(num_cpus=0.25, batch_size=8)

    def record_row(self, row: dict[str, Any]) -> dict[str, Any]:
        from pipelines.bedrock.batch import record_id
        from pipelines.bedrock.errors import RequestValidationError
        from pipelines.bedrock.from_rows import request_from_segment
        from pipelines.stages.embed import segment_failure

        base = {c: row.get(c) for c in SEGMENT_COLUMNS}
        if is_dead_letter(row):
            return base
        try:
            request = request_from_segment(row, self.embedding, modalities=self.modalities)
            body = request.to_body_bytes().decode()
        except RequestValidationError as exc:
            return segment_failure(base, exc)
        rid = record_id(str(row["asset_id"]), row.get("content_version"), int(row["segment_index"]))
        # The body is spliced in as the bytes the on-demand call would send.
        line = '{"recordId":' + json.dumps(rid) + ',"modelInput":' + body + "}"
        return {**base, "input_bytes": None, "record_id": rid, "record_json": line}

    def process(self, batch: pa.Table) -> pa.Table:
        return BATCH_RECORD.table(self.record_row(r) for r in batch.to_pylist())
