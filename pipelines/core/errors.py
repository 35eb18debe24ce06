"""The three tiers of errors.

- :class:`ConfigError`: a bad configuration; raised before any cluster work, names the key.
- :class:`DataError`: one record is bad; caught by the stage and turned into a dead-letter row
  with ``stage``, ``code`` and ``message``.
- :class:`InfrastructureError`: the job cannot go on (Qdrant unreachable after retries, bad
  credentials); fails the job loudly.
"""

from __future__ import annotations


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


class DataError(PipelineError):
    """One record cannot be processed. ``code`` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InfrastructureError(PipelineError, RuntimeError):
    """A dependency the whole job needs is failing; the job stops."""
