"""The decode stage: asset rows in, their segment rows out, lazily.

Routes each asset to the decoder of its modality (:mod:`pipelines.modalities`). A decoder yields
segment rows and raises :class:`~pipelines.core.errors.RecordError` when the asset (or the rest of
it) cannot be decoded; a segment that fails while the others go on (one PDF page, one oversized
video segment) is *yielded* as a ``RecordError``, since raising would end the asset.
:func:`decode_asset` is where either becomes a dead-letter row (through
:func:`~pipelines.stages._decode_common.decoded_rows`). Anything else a decoder raises is a bug or
an unexpected library failure, and becomes a dead-letter row with code ``decode_internal`` so that
one odd file cannot stop a corpus.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipelines.config.schema import DecodeConfig, EmbeddingConfig, LimitsConfig, SegmentationConfig
from pipelines.core import codes
from pipelines.core.errors import InfrastructureError, RecordError
from pipelines.core.io import InputPolicy, InputRefused
from pipelines.core.rows import (
    ASSET,
    ASSET_COLUMNS,
    SEGMENT,
    dead_letter_row,
    is_dead_letter,
    require_columns,
)
from pipelines.core.stage import Resources, Stage
from pipelines.modalities import Modality, Registry, current
from pipelines.modalities.base import Extent, asset_part, segment_seconds
from pipelines.stages._decode_common import SOURCE_CHECK, decoded_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssetLimits:
    """What one asset may be (``limits.max_*_per_asset``; None: no limit).

    Checked once, here, for every modality: the bytes when the source is open, then pages,
    media seconds and segments from the modality's cheap look (:meth:`Modality.extent`: a page
    count, a container's duration), all before the decoder runs, so an asset over a limit is
    dead-lettered before any call for it. What the look cannot tell is counted as segments come,
    and the asset is dead-lettered at the first segment over the limit.
    """

    max_pages: int | None = None
    max_media_seconds: float | None = None
    max_segments: int | None = None
    max_bytes: int | None = None

    @classmethod
    def of(cls, cfg: LimitsConfig) -> AssetLimits:
        return cls(
            cfg.max_pages_per_asset,
            cfg.max_media_seconds_per_asset,
            cfg.max_segments_per_asset,
            cfg.max_bytes_per_asset,
        )

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (self.max_pages, self.max_media_seconds, self.max_segments, self.max_bytes)
        )

    def check_bytes(self, size: int) -> None:
        if self.max_bytes is not None and size > self.max_bytes:
            raise RecordError(
                "decode",
                codes.ASSET_TOO_LARGE,
                f"{size} bytes, over limits.max_bytes_per_asset={self.max_bytes}",
            )

    def check(self, extent: Extent, *, counted: bool = False) -> None:
        """Raise the limit's RecordError when ``extent`` is over one (``counted``: seen while
        decoding, not estimated before)."""
        how = "counted while decoding" if counted else "before decoding"
        if self.max_pages is not None and (extent.pages or 0) > self.max_pages:
            raise RecordError(
                "decode",
                codes.ASSET_TOO_MANY_PAGES,
                f"{extent.pages} pages ({how}), over limits.max_pages_per_asset={self.max_pages}",
            )
        seconds = extent.media_seconds or 0.0
        if self.max_media_seconds is not None and seconds > self.max_media_seconds:
            raise RecordError(
                "decode",
                codes.ASSET_TOO_LONG,
                f"{seconds:.1f} s of media ({how}), over "
                f"limits.max_media_seconds_per_asset={self.max_media_seconds:g}",
            )
        if self.max_segments is not None and (extent.segments or 0) > self.max_segments:
            raise RecordError(
                "decode",
                codes.ASSET_TOO_MANY_SEGMENTS,
                f"{extent.segments} segments ({how}), over "
                f"limits.max_segments_per_asset={self.max_segments}",
            )

    def source_check(
        self, modality: Modality, seg: SegmentationConfig
    ) -> Callable[[str, int], None]:
        def check(path: str, size: int) -> None:
            self.check_bytes(size)
            if (
                self.max_pages is not None
                or self.max_media_seconds is not None
                or (self.max_segments is not None)
            ):
                self.check(modality.extent(path, None, seg))

        return check


class _Count:
    """What an asset's decoder has produced so far, for the limits the look could not check."""

    def __init__(self) -> None:
        self.segments = 0
        self.pages: set[int] = set()
        self.seconds = 0.0

    def add(self, row: dict[str, Any]) -> Extent:
        self.segments += 1
        if row.get("page") is not None:
            self.pages.add(int(row["page"]))
        self.seconds += segment_seconds(row) or 0.0
        return Extent(pages=len(self.pages), media_seconds=self.seconds, segments=self.segments)


def decode_asset(
    asset: dict[str, Any],
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
    s3_endpoint_url: str | None = None,
    modalities: Registry | None = None,
    accepts: Collection[str] | None = None,
    limits: AssetLimits | None = None,
    inputs: InputPolicy | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the segment rows of one asset (dead-letter rows for what cannot be decoded).

    ``limits``: the per-asset limits (:class:`AssetLimits`); an asset over one is one
    dead-letter row, and no segment of it is yielded when the limit could be checked before
    decoding.

    ``accepts``: the modalities the use case takes (None: any). A row the asset's modality sends
    as another modality's input (:meth:`~pipelines.modalities.Modality.embedded_as`: a video
    file that holds only audio) dead-letters the asset, with the code the modality gives, when
    the use case does not take that modality.

    ``inputs``: where the job may read (None: anywhere). Checked here, once for every modality,
    before the decoder sees the row: a refused ``uri`` is dead-lettered ``input_outside_roots``
    and never opened; an allowed one reaches the decoder as the path the check resolved (a
    relative path joined to the manifest's folder), and the rows keep the manifest's ``uri``.
    """
    require_columns(asset, ASSET_COLUMNS, "decode")
    uri = asset.get("uri")
    if inputs is not None and uri:
        try:
            located = inputs.check(str(uri))
        except InputRefused as exc:
            yield dead_letter_row(asset, RecordError("decode", codes.INPUT_OUTSIDE_ROOTS, str(exc)))
            return
        except ValueError as exc:  # an s3:// URI without a bucket, a NUL in a path
            yield dead_letter_row(asset, RecordError("decode", codes.BAD_URI, str(exc)))
            return
        if located != uri:
            for row in decode_asset(
                {**asset, "uri": located}, seg, emb, s3_endpoint_url, modalities, accepts, limits
            ):
                row["uri"] = uri
                yield row
            return
    modality = (modalities or current()).get(str(asset["modality"]))
    if modality is None:
        error = RecordError(
            "decode", codes.MODALITY_UNKNOWN, f"no decoder for modality {asset['modality']!r}"
        )
        yield dead_letter_row(asset, error)
        return
    limited = limits is not None and limits.any
    count = _Count()
    if limits is not None and limited and asset.get("text") is not None:
        try:
            text = str(asset["text"])
            limits.check_bytes(len(text.encode("utf-8")))
            limits.check(modality.extent(None, text, seg))
        except RecordError as over:
            yield dead_letter_row(asset, over)
            return
    token = SOURCE_CHECK.set(limits.source_check(modality, seg) if limits and limited else None)
    try:
        yield from _decoded(asset, modality, seg, emb, s3_endpoint_url, accepts, limits, count)
    finally:
        with contextlib.suppress(ValueError):  # closed from another context: nothing to undo
            SOURCE_CHECK.reset(token)


def _decoded(
    asset: dict[str, Any],
    modality: Modality,
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
    s3_endpoint_url: str | None,
    accepts: Collection[str] | None,
    limits: AssetLimits | None,
    count: _Count,
) -> Iterator[dict[str, Any]]:
    produced = 0
    decoded = modality.decode(asset, seg, emb, s3_endpoint_url)
    try:
        for row in decoded_rows(asset, decoded):
            if limits is not None and limits.any and not is_dead_letter(row):
                try:
                    limits.check(count.add(row), counted=True)
                except RecordError as over:
                    yield dead_letter_row(asset, over)
                    close = getattr(decoded, "close", None)
                    if close is not None:
                        close()
                    return
            other = modality.embedded_as(row) if accepts is not None else None
            if other is not None and accepts is not None and other[0] not in accepts:
                error = RecordError(
                    "decode",
                    other[1],
                    f"the {modality.name} file is embedded as {other[0]}, "
                    "which this use case does not take",
                )
                yield dead_letter_row(asset, error)
                close = getattr(decoded, "close", None)
                if close is not None:
                    close()
                return
            produced += 1
            yield row
    except InfrastructureError:
        raise  # the source's storage failed: the run stops cleanly, nothing is dead-lettered
    except MemoryError:
        raise  # the decoder process reports decode_out_of_memory (pipelines/stages/decode_isolated)
    except Exception as exc:  # a decoder bug must not stop the corpus
        log.exception("decoder failed on asset %s", asset.get("asset_id"))
        error = RecordError(
            "decode",
            codes.DECODE_INTERNAL,
            f"{type(exc).__name__}: {exc}",
            segment_index=-1 if produced == 0 else produced,
        )
        yield dead_letter_row(asset, error)
        return
    part = asset_part(asset)
    # A part after the first may hold no segment (fewer segments than parts): the first part
    # speaks for an asset that has none.
    if produced == 0 and (part is None or part[0] == 0):
        yield dead_letter_row(
            asset, RecordError("decode", codes.NO_SEGMENTS, "the decoder produced no segments")
        )


class DecodeStage(Stage):
    """Asset rows in, a stream of small segment tables out (CPU tasks, one per asset block).

    Yielding every few segments keeps a worker's memory bounded by a handful of segments, however
    long the asset: Ray Data moves each yielded table into the object store as it comes.

    Tasks, not a pool of long-lived actors: measured with ``benchmarks/bench_decode.py`` on 2
    cores, an actor pool (two assets queued per actor) kept the cores busier but paid its start-up
    in every run and did no better per core for PDF pages; tasks also balance one long video
    against many small images without pinning work to a worker. Blocks are cut by
    :func:`pipelines.core.plan.asset_blocks`.
    """

    name = "decode"
    takes = ASSET
    gives = SEGMENT

    def __init__(
        self,
        seg: SegmentationConfig,
        emb: EmbeddingConfig,
        s3_endpoint_url: str | None = None,
        *,
        resources: Resources | None = None,
        max_rows_per_output: int = 32,
        max_bytes_per_output: int = 8 * 1024 * 1024,
        modalities: Registry | None = None,
        accepts: Collection[str] | None = None,
        limits: AssetLimits | None = None,
        decode: DecodeConfig | None = None,
        inputs: InputPolicy | None = None,
    ) -> None:
        # Where the job may read (pipelines.core.io.InputPolicy); None: anywhere.
        self.inputs = inputs
        # The driver's registry travels with the stage (modalities registered at run time too).
        self.modalities = modalities or current()
        self.limits = limits
        # The use case's modalities (None: any); see decode_asset.
        self.accepts = frozenset(accepts) if accepts is not None else None
        self.seg = seg
        self.emb = emb
        self.s3_endpoint_url = s3_endpoint_url
        # One asset per call, one block per task (the blocks are pre-cut by work).
        self.resources = resources or Resources(num_cpus=0.75, batch_size=1)
        self.max_rows_per_output = max_rows_per_output
        self.max_bytes_per_output = max_bytes_per_output
        # Each asset is decoded in a worker process of the task (pipelines/stages/
        # decode_isolated.py): a crash, a memory blow-up or a hang fails that asset alone.
        self.decode = decode or DecodeConfig()
        self._setup: bytes | None = None
        if self.decode.isolate:
            from ray import cloudpickle

            # Pickled here, once: modalities registered at run time travel by value, and every
            # task of a Ray worker finds the same decoder process for the same bytes.
            self._setup = cloudpickle.dumps(
                (
                    self.seg,
                    self.emb,
                    self.s3_endpoint_url,
                    self.modalities,
                    self.accepts,
                    self.limits,
                    self.inputs,
                )
            )

    def _decoded(self, asset: dict[str, Any]) -> Iterator[dict[str, Any]]:
        modality = self.modalities.get(str(asset.get("modality")))
        in_process = (
            asset.get("text") is not None and modality is not None and modality.inline_in_process
        )
        if self._setup is None or in_process:
            return decode_asset(
                asset,
                self.seg,
                self.emb,
                self.s3_endpoint_url,
                self.modalities,
                self.accepts,
                self.limits,
                self.inputs,
            )
        from pipelines.stages.decode_isolated import decoder_process

        worker = decoder_process(self._setup, self.decode.timeout_s, self.decode.memory_limit_mb)
        return worker.decode(asset)

    def process(self, batch: pa.Table) -> Iterator[pa.Table]:
        # Output tables are cut by size: big enough that per-block overhead stays small, small
        # enough that a worker holds a few segments at most (8 MB ~ a dozen rendered pages or
        # a couple of video segments), however long the asset.
        pending: list[dict[str, Any]] = []
        pending_bytes = 0
        for asset in batch.to_pylist():
            for row in self._decoded(asset):
                pending.append(row)
                pending_bytes += len(row.get("input_bytes") or b"")
                pending_bytes += len(row.get("input_text") or "")
                if (
                    len(pending) >= self.max_rows_per_output
                    or pending_bytes >= self.max_bytes_per_output
                ):
                    yield SEGMENT.table(pending)
                    pending, pending_bytes = [], 0
        if pending:
            yield SEGMENT.table(pending)
