"""Cutting the asset table into blocks: one decode task per block.

Ray Data runs one task per input block, and each task boundary costs the driver's scheduling loop
about 0.2 s (measured on Ray 2.60: two 0.1 s executor steps). One asset per task therefore wastes
a fifth of a core on one-second assets such as a 30-page PDF. Blocks group consecutive assets up
to an estimated amount of work, while keeping enough blocks for every CPU to have work and for the
last round to be short. Work is estimated from the input's size (file size for local files,
characters for inline text) weighted by how expensive a byte of each modality is to decode;
assets whose size is unknown (``s3://``) get a block of their own.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa

from pipelines.core.io import local_file_path

# Relative decode cost per input byte (PDF pages are rendered: a byte of PDF is far more work
# than a byte of JPEG or of compressed video).
WORK_PER_BYTE = {"document": 16.0, "image": 1.0, "audio": 2.0, "video": 1.0, "text": 1.0}
# About a few seconds of decoding on one core.
TARGET_WORK = 16 * 1024 * 1024
MAX_ASSETS_PER_BLOCK = 256
BLOCKS_PER_CPU = 4


def estimate_work(row: dict[str, Any]) -> float | None:
    """Estimated decode work of one asset row, or None when its size cannot be known cheaply."""
    weight = WORK_PER_BYTE.get(str(row.get("modality")), 1.0)
    text = row.get("text")
    if text is not None:
        return len(text) * weight
    uri = row.get("uri")
    path = local_file_path(str(uri)) if uri else None
    if path is None:
        return None
    try:
        return os.path.getsize(path) * weight
    except OSError:
        return 0.0  # the decoder will dead-letter it quickly


def asset_blocks(table: pa.Table, cpus: int) -> list[pa.Table]:
    """Consecutive slices of ``table``, each one decode task."""
    n = table.num_rows
    if n == 0:
        return []
    rows = table.select(["uri", "modality", "text"]).to_pylist()
    work = [estimate_work(r) for r in rows]
    known = [w for w in work if w is not None]
    min_blocks = max(1, cpus * BLOCKS_PER_CPU)
    # Never so much work per block that fewer than min_blocks blocks would exist.
    per_block = min(float(TARGET_WORK), max(1.0, sum(known) / min_blocks)) if known else 1.0
    blocks: list[pa.Table] = []
    start, acc = 0, 0.0
    for i, w in enumerate(work):
        if w is None:
            # Unknown size: its own block (it may be a long video).
            if i > start:
                blocks.append(table.slice(start, i - start))
            blocks.append(table.slice(i, 1))
            start, acc = i + 1, 0.0
            continue
        acc += w
        if acc >= per_block or i + 1 - start >= MAX_ASSETS_PER_BLOCK:
            blocks.append(table.slice(start, i + 1 - start))
            start, acc = i + 1, 0.0
    if start < n:
        blocks.append(table.slice(start, n - start))
    return blocks


def configure_data_context(ctx: Any) -> None:
    """Ray Data settings the pipeline relies on (applied by the backfill and the benchmarks)."""
    ctx.execution_options.preserve_order = False
    # Decoders yield a few segments at a time; small blocks let each go downstream as it comes
    # instead of being merged into one big block per task (memory bounded by segments).
    ctx.target_max_block_size = 16 * 1024 * 1024
