"""The decode stage: one asset row in, its segment rows out, lazily.

Routes each asset to the decoder of its modality. Decoders never raise for bad data (they yield
dead-letter rows); anything they do raise is a bug or an unexpected library failure, and becomes a
dead-letter row with code ``decode_internal`` so that one odd file cannot stop a corpus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core.rows import ASSET_COLUMNS, dead_letter_row, require_columns
from pipelines.core.schemas import SEGMENT_SCHEMA, rows_to_table

log = logging.getLogger(__name__)

Decoder = Callable[..., Iterator[dict[str, Any]]]


def _decoder_for(modality: str) -> Decoder | None:
    # Imported lazily: PyMuPDF and PyAV load only in the workers that need them.
    if modality == "document":
        from pipelines.stages.decode_pdf import decode_pdf

        return decode_pdf
    if modality == "image":
        from pipelines.stages.decode_image import decode_image

        return decode_image
    if modality == "text":
        from pipelines.stages.chunk_text import decode_text

        return decode_text
    if modality == "audio":
        from pipelines.stages.segment_audio import segment_audio

        return segment_audio
    if modality == "video":
        from pipelines.stages.segment_video import segment_video

        return segment_video
    return None


def decode_asset(
    asset: dict[str, Any],
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
    s3_endpoint_url: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the segment rows of one asset (dead-letter rows for what cannot be decoded)."""
    require_columns(asset, ASSET_COLUMNS, "decode")
    decoder = _decoder_for(asset["modality"])
    if decoder is None:
        yield dead_letter_row(
            asset, "decode", "modality_unknown", f"no decoder for modality {asset['modality']!r}"
        )
        return
    produced = 0
    try:
        for row in decoder(asset, seg, emb, s3_endpoint_url):
            produced += 1
            yield row
    except Exception as exc:  # a decoder bug must not stop the corpus
        log.exception("decoder failed on asset %s", asset.get("asset_id"))
        yield dead_letter_row(
            asset,
            "decode",
            "decode_internal",
            f"{type(exc).__name__}: {exc}",
            segment_index=-1 if produced == 0 else produced,
        )
        return
    if produced == 0:
        yield dead_letter_row(asset, "decode", "no_segments", "the decoder produced no segments")


class DecodeFn:
    """Ray Data UDF: a batch of asset rows in, a stream of small segment tables out.

    Yielding every few segments keeps a worker's memory bounded by a handful of segments, however
    long the asset: Ray Data moves each yielded table into the object store as it comes.
    """

    def __init__(
        self,
        seg: SegmentationConfig,
        emb: EmbeddingConfig,
        s3_endpoint_url: str | None = None,
        max_rows_per_output: int = 32,
        max_bytes_per_output: int = 8 * 1024 * 1024,
    ) -> None:
        self.seg = seg
        self.emb = emb
        self.s3_endpoint_url = s3_endpoint_url
        self.max_rows_per_output = max_rows_per_output
        self.max_bytes_per_output = max_bytes_per_output

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        # Output tables are cut by size: big enough that per-block overhead stays small, small
        # enough that a worker holds a few segments at most (8 MB ~ a dozen rendered pages or
        # a couple of video segments), however long the asset.
        pending: list[dict[str, Any]] = []
        pending_bytes = 0
        for asset in batch.to_pylist():
            for row in decode_asset(asset, self.seg, self.emb, self.s3_endpoint_url):
                pending.append(row)
                pending_bytes += len(row.get("input_bytes") or b"")
                pending_bytes += len(row.get("input_text") or "")
                if (
                    len(pending) >= self.max_rows_per_output
                    or pending_bytes >= self.max_bytes_per_output
                ):
                    yield rows_to_table(pending, SEGMENT_SCHEMA)
                    pending, pending_bytes = [], 0
        if pending:
            yield rows_to_table(pending, SEGMENT_SCHEMA)


def add_decode_stage(
    ds: Any,
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
    s3_endpoint_url: str | None,
    *,
    num_cpus: float,
    concurrency: int | None = None,
    decode_cls: type[DecodeFn] = DecodeFn,
    ray_remote_args: dict[str, Any] | None = None,
    **extra_kwargs: Any,
) -> Any:
    """Append the decode stage to ``ds``: one CPU task per input block (``asset_blocks``), the
    assets of a block decoded one at a time, ``num_cpus`` logical CPUs per task.

    Tasks, not a pool of long-lived actors: measured with ``benchmarks/bench_decode.py`` on 2
    cores, an actor pool (two assets queued per actor) kept the cores busier but paid its start-up
    in every run and did no better per core for PDF pages; tasks also balance one long video
    against many small images without pinning work to a worker. ``ray_remote_args`` go to the
    tasks (e.g. a ``runtime_env``).
    """
    import ray.data as rd

    return ds.map_batches(
        decode_cls(seg, emb, s3_endpoint_url, **extra_kwargs),
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=num_cpus,
        compute=rd.TaskPoolStrategy(size=concurrency) if concurrency else None,
        **(ray_remote_args or {}),
    )
