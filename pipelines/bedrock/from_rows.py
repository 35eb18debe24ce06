"""Build the request for one pipeline segment row (row -> :class:`EmbeddingRequest`).

How a segment becomes a request is its modality's business (:mod:`pipelines.modalities`); this
is the one entry point that looks the modality up and checks what every request needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelines.bedrock.errors import RequestValidationError
from pipelines.bedrock.request import EmbeddingRequest
from pipelines.config.schema import EmbeddingConfig

if TYPE_CHECKING:
    from pipelines.modalities import Registry


def request_from_segment(
    row: Mapping[str, Any],
    emb_cfg: EmbeddingConfig,
    purpose: str | None = None,
    modalities: Registry | None = None,
) -> EmbeddingRequest:
    """The SINGLE_EMBEDDING request for one segment row (see :mod:`pipelines.core.rows`).

    ``purpose`` defaults to ``emb_cfg.index_purpose``. Raises :class:`RequestValidationError`
    (field ``row.<column>``) when the row does not say what to send, and validates the request.
    """
    from pipelines.modalities import current

    if row.get("error_code") is not None:
        raise ValueError("dead-letter rows carry no input; pass them through instead")
    registry = modalities or current()
    modality = registry.get(str(row.get("modality")))
    if modality is None:
        raise RequestValidationError(
            "row.modality", f"must be one of {sorted(registry)}; got {row.get('modality')!r}"
        )
    return modality.request(row, emb_cfg, purpose)
