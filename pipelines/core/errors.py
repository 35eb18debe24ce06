"""The three tiers of errors.

- :class:`ConfigError`: a bad configuration; raised before any cluster work, names the key.
- :class:`RecordError`: one record (an asset, or one segment of it) cannot be processed; raised
  where the problem is found, with the ``stage``, a ``code`` from :mod:`pipelines.core.codes` and a
  ``message``, and turned into a dead-letter row by the stage
  (:func:`pipelines.core.rows.dead_letter_row`).
- :class:`InfrastructureError`: the job cannot go on (Qdrant unreachable after retries, bad
  credentials); fails the job loudly. :class:`SpendingLimitReached` is the one that is not a
  failure: a spending limit stopped the run.
"""

from __future__ import annotations

from typing import Any


class PipelineError(Exception):
    """Base class of the project's errors."""


class ConfigError(PipelineError, ValueError):
    """A configuration value is invalid. ``key`` names it (e.g. ``embedding.dimension``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class ManifestError(PipelineError, ValueError):
    """The manifest is malformed; the message names the row and the column."""

    def __init__(self, message: str, row: int | None = None, column: str | None = None) -> None:
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = f"manifest {', '.join(where)}: " if where else "manifest: "
        super().__init__(prefix + message)
        self.row = row
        self.column = column


class RecordError(PipelineError):
    """One record cannot be processed: the only way a stage fails a record.

    ``stage`` is the stage that failed it (``decode``, ``embed``, ``write``), ``code`` one of the
    constants of :mod:`pipelines.core.codes`, ``message`` says what was wrong for a person.
    ``where`` holds the failed segment's position columns when the failure is one segment's, not
    the whole asset's (``segment_index``, ``segment_count``, ``page``, ``start_s``, ``end_s``,
    ...); the dead-letter row carries them.
    """

    def __init__(self, stage: str, code: str, message: str, **where: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.stage = stage
        self.code = code
        self.message = message
        self.where = where

    def at(self, **where: Any) -> RecordError:
        """This error, placed at a segment (fields set here win over those already set)."""
        self.where = {**self.where, **where}
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions cross Ray process boundaries by pickle; keep every field.
        return (
            _rebuild_record_error,
            (type(self), self.stage, self.code, self.message, self.where),
        )


def _rebuild_record_error(
    cls: type[RecordError], stage: str, code: str, message: str, where: dict[str, Any]
) -> RecordError:
    err = RecordError.__new__(cls)
    RecordError.__init__(err, stage, code, message, **where)
    return err


class InfrastructureError(PipelineError, RuntimeError):
    """A dependency the whole job needs is failing; the job stops."""


class SpendingLimitReached(InfrastructureError):
    """A run limit (``limits.max_calls``, ``limits.max_usd``) refused the next call: the run stops
    cleanly and resumably, as after an infrastructure failure, with its own exit code (4)."""
