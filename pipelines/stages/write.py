"""The write stage: embedded rows in, acknowledgements out, through a vector store.

Each output row is the input row without its vector and media bytes: written rows unchanged,
rows the store refused (wrong dimension, non-finite vector, ...) turned into dead letters with
``error_stage="write"``, incoming dead letters passed through. The driver's accounting reads the
acknowledgements the same way whichever mode wrote them.

Where it runs is the store's business: a store that allows one writer process (Qdrant's embedded
mode locks its folder) is written from the driver (``on_driver``); a server is written by a pool
of actors in parallel, so upserts go from the workers straight to the server and only slim
acknowledgements reach the driver.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pipelines.core import codes
from pipelines.core.errors import InfrastructureError
from pipelines.core.rows import EMBEDDED, is_dead_letter
from pipelines.core.stage import Resources, Stage
from pipelines.stores.base import VectorStore


class WriteStage(Stage):
    """Writes embedded rows into ``store`` and acknowledges each one."""

    name = "write"
    takes = EMBEDDED
    gives = EMBEDDED

    def __init__(
        self, store: VectorStore, *, resources: Resources | None = None, batch_size: int = 128
    ) -> None:
        self.store = store
        if store.single_writer:
            self.resources = Resources(num_cpus=0, on_driver=True, batch_size=batch_size)
        else:
            self.resources = resources or Resources(
                num_cpus=0.25, concurrency=2, actor=True, batch_size=batch_size
            )

    def setup(self) -> None:
        self.store.open()

    def teardown(self) -> None:
        # The driver's store belongs to the job, which closes it after the run.
        if not self.resources.on_driver:
            self.store.close()

    def process(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        try:
            result = self.store.write([r for r in rows if not is_dead_letter(r)])
        except InfrastructureError:
            raise
        except Exception as exc:
            # The store's transient errors were retried already: whatever is left means the
            # store cannot take the run's writes (refused rows come back as dead letters).
            raise InfrastructureError(
                f"the store failed to write: {type(exc).__name__}: {exc}"
            ) from exc
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
                    error_code=bad.get("error_code") or codes.WRITE_REJECTED,
                    error_message=bad.get("error_message") or "",
                )
            acks.append(ack)
        return EMBEDDED.table(acks)
