"""Upsert throughput of qdrant-client's embedded local mode through :class:`QdrantStore`.

Usage: ``python -m benchmarks.bench_qdrant_local [--points 3000] [--dimension 1024]``

Writes ``--points`` random unit vectors with a realistic payload into a fresh on-disk store
(``path=``) for each batch size, and once into ``:memory:`` for comparison, and prints points/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np

from pipelines.config.schema import EmbeddingConfig, QdrantConfig, SegmentationConfig
from pipelines.stores.qdrant import QdrantStore


def make_rows(n: int, dimension: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        {
            "asset_id": f"doc-{i // 10:06d}.pdf",
            "uri": f"s3://corpus/docs/doc-{i // 10:06d}.pdf",
            "modality": "document",
            "content_version": f"etag:{i // 10:032x}",
            "metadata": '{"source": "bench", "year": 2024}',
            "label": "report",
            "payload": None,
            "segment_index": i % 10,
            "segment_count": 10,
            "page": i % 10,
            "embedding_type": "IMAGE",
            "vector": vectors[i],
        }
        for i in range(n)
    ]


def run(location: str, batch_size: int, rows: list[dict[str, Any]], dimension: int) -> float:
    cfg = QdrantConfig(path=location, collection="bench", batch_size=batch_size)
    emb, seg = EmbeddingConfig(dimension=dimension), SegmentationConfig()
    with QdrantStore(cfg, dimension, embedding=emb, segmentation=seg) as writer:
        writer.ensure_collection()
        t0 = time.perf_counter()
        result = writer.write(rows)
        elapsed = time.perf_counter() - t0
        assert result.written == len(rows) and writer.finish() == len(rows)
    return len(rows) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=3000)
    parser.add_argument("--dimension", type=int, default=1024)
    args = parser.parse_args()
    rows = make_rows(args.points, args.dimension)
    print(f"{args.points} points, {args.dimension}-d, embedded local mode")
    for batch_size in (64, 128, 256):
        with tempfile.TemporaryDirectory() as tmp:
            rate = run(tmp, batch_size, rows, args.dimension)
        print(f"  path=   batch_size={batch_size:4d}: {rate:8.0f} points/s")
    for batch_size in (64, 256):
        rate = run(":memory:", batch_size, rows, args.dimension)
        print(f"  memory  batch_size={batch_size:4d}: {rate:8.0f} points/s")


if __name__ == "__main__":
    main()
