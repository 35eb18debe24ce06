"""Vector stores behind one protocol (:mod:`pipelines.stores.base`); Qdrant is the one we ship."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.stores.base import AssetHolding, QueryPart, SearchHit, VectorStore, WriteResult

if TYPE_CHECKING:
    from pipelines.config.schema import (
        EmbeddingConfig,
        KeywordsConfig,
        QdrantConfig,
        SegmentationConfig,
    )

__all__ = ["AssetHolding", "QueryPart", "SearchHit", "VectorStore", "WriteResult", "open_store"]


def open_store(
    qdrant: QdrantConfig,
    embedding: EmbeddingConfig,
    segmentation: SegmentationConfig,
    keywords: KeywordsConfig | None = None,
) -> VectorStore:
    """The run's store (not yet connected: it opens its client on first use). ``keywords``:
    create the collection with a keyword vector and write text segments' keyword vectors."""
    from pipelines.stores.qdrant import QdrantStore

    return QdrantStore(
        qdrant,
        embedding.dimension,
        embedding=embedding,
        segmentation=segmentation,
        keywords=keywords,
    )
