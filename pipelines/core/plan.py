"""Cutting the asset table into blocks: one decode task per block.

Ray Data runs one task per input block, and each task boundary leaves a slot idle for about
0.2 s (measured on Ray 2.60: the executor polls its tasks every 0.1 s and hands a finished
task's outputs on one poll later). One asset per task therefore wastes a fifth of a core on
one-second assets such as a 30-page PDF; one block per CPU would leave CPUs idle at the end,
when some blocks finish early. Blocks are cut by guided self-scheduling: each block takes
``1 / (GUIDED_FACTOR * cpus)`` of the estimated work not yet assigned, so early blocks are large
(few boundaries) and they shrink towards the end (the last round is short and even), with at most
about ``2 * GUIDED_FACTOR * cpus * ln(assets)`` blocks in all.

Work is estimated from the input's size (file size for local files, characters for inline text)
weighted by how expensive a byte of each modality is to decode. Only the relative sizes within a
run matter, except for the cap (``MAX_BLOCK_WORK``, a few minutes of decoding, which bounds what a
retried task redoes). Assets whose size is unknown (``s3://``) get a block of their own.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa

from pipelines.core.io import local_file_path
from pipelines.modalities import Registry, current

# Most estimated work per block: a few minutes of decoding on one core.
MAX_BLOCK_WORK = 256 * 1024 * 1024
MAX_ASSETS_PER_BLOCK = 256
GUIDED_FACTOR = 2


def estimate_work(row: dict[str, Any], modalities: Registry | None = None) -> float | None:
    """Estimated decode work of one asset row, or None when its size cannot be known cheaply.

    Each modality weighs a byte of its input (``Modality.work_per_byte``: PDF pages are rendered,
    so a byte of PDF is far more work than a byte of JPEG or of compressed video). Measured on the
    benchmark corpora, 1 MiB of estimated work is about 0.6 s of decoding on one core for PDF
    pages and audio, 1.3 s for re-encoded video; stream-copied video is far cheaper per byte.
    """
    modality = (modalities or current()).get(str(row.get("modality")))
    weight = modality.work_per_byte if modality is not None else 1.0
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
    """Consecutive slices of ``table``, each one decode task, largest first (see the module)."""
    n = table.num_rows
    if n == 0:
        return []
    rows = table.select(["uri", "modality", "text"]).to_pylist()
    registry = current()
    work = [estimate_work(r, registry) for r in rows]
    share = GUIDED_FACTOR * max(1, cpus)
    remaining = sum(w for w in work if w is not None)

    def target() -> float:
        return min(float(MAX_BLOCK_WORK), remaining / share)

    blocks: list[pa.Table] = []
    start, acc, goal = 0, 0.0, target()
    for i, w in enumerate(work):
        if w is None:
            # Unknown size: its own block (it may be a long video).
            if i > start:
                blocks.append(table.slice(start, i - start))
                remaining -= acc
            blocks.append(table.slice(i, 1))
            start, acc, goal = i + 1, 0.0, target()
            continue
        # Close the block before this asset when the asset would end up mostly past the goal.
        if i > start and (acc + w / 2 > goal or i - start >= MAX_ASSETS_PER_BLOCK):
            blocks.append(table.slice(start, i - start))
            remaining -= acc
            start, acc, goal = i, 0.0, target()
        acc += w
    if start < n:
        blocks.append(table.slice(start, n - start))
    return blocks
