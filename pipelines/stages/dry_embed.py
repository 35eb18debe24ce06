"""The dry-run embed stage: segment rows in, the rows a real embed stage would give out, with no
call made (estimates, ``dry_run=true``).

Every segment's request is built and checked exactly as the embed stage builds it (so a segment
the real run would refuse before calling, for instance one over the model's size limits, is a dead
letter here too, with the same code), then it is counted as one call: one row per segment,
``bedrock_calls = 1``, no vector. The run ledger accounts for these rows as it accounts for real
ones, so an estimate's calls and cost come from the same code as a real run's report.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pipelines.config.schema import EmbeddingConfig
from pipelines.core.rows import EMBEDDED, SEGMENT, SEGMENT_COLUMNS, is_dead_letter
from pipelines.core.stage import Resources, Stage
from pipelines.modalities import Registry, current
from pipelines.stages.embed import segment_failure


class DryEmbedStage(Stage):
    """Segment rows in, embedded rows (without vectors) out: one counted call per segment."""

    name = "dry_embed"
    takes = SEGMENT
    gives = EMBEDDED

    def __init__(self, embedding: EmbeddingConfig, *, resources: Resources | None = None) -> None:
        self.embedding = embedding
        self.resources = resources or Resources()
        self.modalities: Registry = current()

    def dry_row(self, row: dict[str, Any]) -> dict[str, Any]:
        from pipelines.bedrock.errors import RequestValidationError
        from pipelines.bedrock.from_rows import request_from_segment

        base = {c: row.get(c) for c in SEGMENT_COLUMNS}
        if is_dead_letter(row):
            return base
        try:
            request_from_segment(row, self.embedding, modalities=self.modalities)
        except RequestValidationError as exc:
            return segment_failure(base, exc)
        return {**base, "bedrock_calls": 1, "throttles": 0, "retries": 0, "input_bytes": None}

    def process(self, batch: pa.Table) -> pa.Table:
        return EMBEDDED.table([self.dry_row(r) for r in batch.to_pylist()])
