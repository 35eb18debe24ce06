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

An asset whose estimated work is over the current block goal would bound the run (a 400-page PDF
on one core while the others idle at the end): when its modality can decode a part of it
(:meth:`pipelines.modalities.Modality.split`: PDF pages rendered as images, audio windows,
re-encoded video segments), it
becomes ``n`` rows with ``part = "i/n"``, each placed like an asset of ``work / n``. Each part
decodes the whole asset's plan and yields only its own segments
(:func:`pipelines.modalities.base.part_segments`), numbered in the whole asset, so the ledger
counts the asset complete once every part's segments are written, as for an asset decoded
whole. Parts are at least ``MIN_PART_WORK`` (a few seconds of decoding each).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipelines.core.io import local_file_path
from pipelines.modalities import Registry, current
from pipelines.modalities.base import PART_COLUMN

if TYPE_CHECKING:
    from pipelines.config.schema import SegmentationConfig

# Most estimated work per block: a few minutes of decoding on one core.
MAX_BLOCK_WORK = 256 * 1024 * 1024
# Most assets per block. A Ray task costs about the same whatever its rows: 256 small inline
# texts were ~10 ms of work, less than the task itself cost (benchmarks/bench_scale.py).
MAX_ASSETS_PER_BLOCK = 4096
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


def asset_blocks(
    table: pa.Table, cpus: int, seg: SegmentationConfig | None = None
) -> list[pa.Table]:
    """Consecutive slices of ``table``, each one decode task, largest first (see the module).

    With ``seg`` (local segmentation), an asset whose estimated work is over the block goal is
    split into parts when its modality can decode one (:meth:`Modality.split`: PDF pages rendered
    as images), each part a row of its own with the ``part`` column set, so one large asset does
    not bound the run. Every block carries the ``part`` column (null for a whole asset)."""
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

    # Rows of the output table: (row of ``table``, part label or None), and their work.
    order: list[int] = []
    parts: list[str | None] = []
    cuts: list[int] = []  # block boundaries in ``order``
    acc, goal = 0.0, target()

    def close() -> None:
        nonlocal acc, remaining, goal
        cuts.append(len(order))
        remaining -= acc
        acc, goal = 0.0, target()

    for i, w in enumerate(work):
        start = cuts[-1] if cuts else 0
        if w is None:
            # Unknown size: its own block (it may be a long video).
            if len(order) > start:
                close()
            order.append(i)
            parts.append(None)
            cuts.append(len(order))
            acc, goal = 0.0, target()
            continue
        pieces = 1
        modality = registry.get(str(rows[i].get("modality")))
        if seg is not None and modality is not None and w > goal:
            pieces = max(1, modality.split(rows[i], seg, w, goal))
        for k in range(pieces):
            share_w = w / pieces
            start = cuts[-1] if cuts else 0
            # Close the block before this item when it would end up mostly past the goal.
            if len(order) > start and (
                acc + share_w / 2 > goal or len(order) - start >= MAX_ASSETS_PER_BLOCK
            ):
                close()
            order.append(i)
            parts.append(f"{k}/{pieces}" if pieces > 1 else None)
            acc += share_w
    if not cuts or cuts[-1] < len(order):
        cuts.append(len(order))
    if len(order) == n and all(p is None for p in parts):
        out = table  # nothing split: slices of the input, no copy
    else:
        out = table.take(pa.array(order, pa.int64()))
    out = out.append_column(PART_COLUMN, pa.array(parts, pa.string()))
    blocks: list[pa.Table] = []
    begin = 0
    for end in cuts:
        if end > begin:
            blocks.append(out.slice(begin, end - begin))
        begin = end
    return blocks
