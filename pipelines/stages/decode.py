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

import logging
from collections.abc import Collection, Iterator
from typing import Any

import pyarrow as pa

from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core import codes
from pipelines.core.errors import InfrastructureError, RecordError
from pipelines.core.io import InputPolicy, InputRefused
from pipelines.core.rows import ASSET, ASSET_COLUMNS, SEGMENT, dead_letter_row, require_columns
from pipelines.core.stage import Resources, Stage
from pipelines.modalities import Registry, current
from pipelines.stages._decode_common import decoded_rows

log = logging.getLogger(__name__)


def decode_asset(
    asset: dict[str, Any],
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
    s3_endpoint_url: str | None = None,
    modalities: Registry | None = None,
    accepts: Collection[str] | None = None,
    inputs: InputPolicy | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the segment rows of one asset (dead-letter rows for what cannot be decoded).

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
                {**asset, "uri": located}, seg, emb, s3_endpoint_url, modalities, accepts
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
    produced = 0
    decoded = modality.decode(asset, seg, emb, s3_endpoint_url)
    try:
        for row in decoded_rows(asset, decoded):
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
    if produced == 0:
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
        inputs: InputPolicy | None = None,
    ) -> None:
        # Where the job may read (pipelines.core.io.InputPolicy); None: anywhere.
        self.inputs = inputs
        # The driver's registry travels with the stage (modalities registered at run time too).
        self.modalities = modalities or current()
        # The use case's modalities (None: any); see decode_asset.
        self.accepts = frozenset(accepts) if accepts is not None else None
        self.seg = seg
        self.emb = emb
        self.s3_endpoint_url = s3_endpoint_url
        # One asset per call, one block per task (the blocks are pre-cut by work).
        self.resources = resources or Resources(num_cpus=0.75, batch_size=1)
        self.max_rows_per_output = max_rows_per_output
        self.max_bytes_per_output = max_bytes_per_output

    def process(self, batch: pa.Table) -> Iterator[pa.Table]:
        # Output tables are cut by size: big enough that per-block overhead stays small, small
        # enough that a worker holds a few segments at most (8 MB ~ a dozen rendered pages or
        # a couple of video segments), however long the asset.
        pending: list[dict[str, Any]] = []
        pending_bytes = 0
        for asset in batch.to_pylist():
            for row in decode_asset(
                asset,
                self.seg,
                self.emb,
                self.s3_endpoint_url,
                self.modalities,
                self.accepts,
                self.inputs,
            ):
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
