"""Vector stores behind one protocol (:mod:`pipelines.stores.base`); Qdrant is the one we ship."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.stores.base import AssetHolding, VectorStore, WriteResult

if TYPE_CHECKING:
    from pipelines.config.schema import EmbeddingConfig, QdrantConfig, SegmentationConfig

__all__ = ["AssetHolding", "VectorStore", "WriteResult", "open_store"]


def open_store(
    qdrant: QdrantConfig, embedding: EmbeddingConfig, segmentation: SegmentationConfig
) -> VectorStore:
    """The run's store (not yet connected: it opens its client on first use)."""
    from pipelines.stores.qdrant import QdrantStore

    return QdrantStore(qdrant, embedding.dimension, embedding=embedding, segmentation=segmentation)
