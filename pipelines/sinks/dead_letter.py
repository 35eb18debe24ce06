"""The dead-letter file: every record that could not be embedded or written, with its reason.

One row per failure of every asset that ended ``dead_lettered`` (none of its points stay) or
``partial`` (``usecase.partial_assets=keep``: its other segments stay in the collection);
``asset_outcome`` says which.

A run always writes ``dead_letter.parquet`` (empty when nothing failed), with a fixed schema, so
that scripts reading it never have to special-case a missing file or a missing column. Its rows
are the run ledger's (:meth:`pipelines.core.ledger.RunLedger.dead_letters`); ``error_code`` is one
of :mod:`pipelines.core.codes` (listed in ``docs/dead-letter-codes.md``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DEAD_LETTER_FILE = "dead_letter.parquet"
MAX_MESSAGE_CHARS = 2000

DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("asset_id", pa.string()),
        ("uri", pa.string()),
        ("modality", pa.string()),
        ("stage", pa.string()),
        ("error_code", pa.string()),
        ("message", pa.string()),
        # -1 when the whole asset failed before segmentation.
        ("segment_index", pa.int64()),
        # What became of the asset: dead_lettered, or partial (its other segments were kept).
        ("asset_outcome", pa.string()),
    ]
)


DEAD_LETTER_COLUMNS = tuple(DEAD_LETTER_SCHEMA.names)
_REQUIRED = ("asset_id", "stage", "error_code")
ROWS_PER_GROUP = 10_000


class DeadLetterWriter:
    """Streams dead-letter rows to ``dead_letter.parquet``.

    ``path`` is either the run folder (the file is ``<path>/dead_letter.parquet``) or a path ending
    in ``.parquet``. Rows have this file's columns (:data:`DEAD_LETTER_COLUMNS`: ``asset_id``,
    ``uri``, ``modality``, ``stage``, ``error_code``, ``message``, ``segment_index``,
    ``asset_outcome``), as the ledger gives them; ``asset_id``, ``stage`` and ``error_code`` are
    required, the others may be missing or None, and any other key is refused. Rows go to a
    temporary file in row groups of :data:`ROWS_PER_GROUP` (memory does not grow with the
    corpus); :meth:`close` renames it over the file, so a reader never sees a half-written one.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = os.fspath(path)
        self.path = path if path.endswith(".parquet") else os.path.join(path, DEAD_LETTER_FILE)
        self._rows: list[dict[str, Any]] = []
        self._count = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp = f"{self.path}.tmp-{os.getpid()}"
        self._closed = False

    def __len__(self) -> int:
        return self._count

    def add(self, row: Mapping[str, Any]) -> None:
        """Record one failed row (see the class docstring for its columns)."""
        if self._closed:
            raise RuntimeError("DeadLetterWriter is closed")
        unknown = sorted(set(row) - set(DEAD_LETTER_COLUMNS))
        missing = [c for c in _REQUIRED if row.get(c) is None]
        if unknown or missing:
            raise ValueError(
                f"a dead-letter row has the columns {list(DEAD_LETTER_COLUMNS)}; "
                f"unknown: {unknown}, missing: {missing}"
            )
        message = row.get("message")
        segment_index = row.get("segment_index")
        self._rows.append(
            {
                "asset_id": row["asset_id"],
                "uri": row.get("uri"),
                "modality": row.get("modality"),
                "stage": row["stage"],
                "error_code": row["error_code"],
                "message": None if message is None else str(message)[:MAX_MESSAGE_CHARS],
                "segment_index": -1 if segment_index is None else int(segment_index),
                "asset_outcome": row.get("asset_outcome"),
            }
        )
        self._count += 1
        if len(self._rows) >= ROWS_PER_GROUP:
            self._flush()

    def add_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Record several failed rows."""
        for row in rows:
            self.add(row)

    def _flush(self) -> None:
        if self._writer is None:
            parent = os.path.dirname(self.path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            self._writer = pq.ParquetWriter(self._tmp, DEAD_LETTER_SCHEMA)
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=DEAD_LETTER_SCHEMA))
            self._rows = []

    def close(self) -> str:
        """Finish the file (renamed into place) and refuse further rows; returns its path."""
        if not self._closed:
            self._flush()
            assert self._writer is not None
            self._writer.close()
            os.replace(self._tmp, self.path)
            self._closed = True
        return self.path

    def __enter__(self) -> DeadLetterWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Written even when the run fails: the rows gathered so far are still true.
        if not self._closed:
            self.close()
