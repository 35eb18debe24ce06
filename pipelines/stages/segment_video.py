r"""Cut a video asset into mp4 segments of at most 30 s for Nova, by stream copy or re-encode.

Input: any file PyAV (FFmpeg) can demux, by local path, ``file://`` or ``s3://`` (through
:func:`pipelines.core.io.open_local`). Output: one segment row per segment
(``input_kind="video"``, ``input_format="mp4"``), produced lazily, or
:class:`~pipelines.core.errors.RecordError`\ s (``stage="decode"``) that the decode stage turns
into dead-letter rows.

How it works (memory is bounded by the segments being built, never by the asset; a 1-hour video
is read packet by packet):

1. **Probe** (:func:`~pipelines.stages.video.probe.probe_video`, no decoding; MP4/MOV from the
   sample table, other files by demuxing every packet): keyframe times, the real duration
   (last packet end), per-packet sizes, codecs, frame size and rate.
2. **Plan** (:func:`~pipelines.stages.video.plan.plan_video_cuts`, a pure function): stream copy
   or re-encode, and the exact segment bounds, so ``segment_count`` is known before the first
   row. The decision rule is in :mod:`pipelines.stages.video.plan`.
3. **Cut**: stream copy (:mod:`pipelines.stages.video.stream_copy`) remuxes packets into an
   in-memory mp4 per segment (no decoding: hundreds of times real time); re-encode
   (:mod:`pipelines.stages.video.reencode`) decodes once and feeds the frames of each window to
   its own libx264 + AAC encoder (several at once when windows overlap).

Windows, tails and truncation follow :mod:`pipelines.stages.segment_audio`: a last piece adding
less than 0.5 s is merged into the previous segment when that stays within 30 s, else dropped.
A segment never carries frames or samples past its planned end: a dropped tail goes nowhere (and
is not even read), an audio packet straddling a stream-copy cut goes to neither side, and
re-encoded audio loses up to one AAC frame rather than decode to more than ``END_SLACK_S`` past
the window, so no segment decodes to more than 30 s.
A file that holds audio and no video stream (cover art does not count: an MP3's or M4A's
attached picture is not video) plays as audio: it is cut by the audio decoder
(:func:`pipelines.stages.segment_audio.audio_file_rows`) with the use case's audio settings
(``audio_window_s``, ``audio_overlap_s``, ``audio_format``) and its rows have
``input_kind="audio"``: the video modality sends them as audio input, and the report counts the
asset under ``notes.audio_only_video`` (a use case that takes no audio dead-letters it with
``audio_only_video``, in the decode stage).

Container and stream tags in any encoding never fail a decode (see
:func:`pipelines.stages.segment_audio.open_media`); the file is opened again for the cut after
the probe, since some demuxers (FLV without an index) cannot seek back to the start.

Codes: ``file_not_found``, ``empty_file``, ``media_corrupt``, ``no_video_stream`` (neither video
nor audio), ``not_a_video``, ``codec_unsupported``, ``media_empty``, ``media_truncated``,
``reencode_required``, ``segment_too_large``; for an audio-only file, the audio decoder's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core import codes
from pipelines.core.errors import RecordError
from pipelines.modalities.base import PART_COLUMN, asset_part
from pipelines.modalities.probing import real_video_streams
from pipelines.stages._decode_common import STAGE, local_source
from pipelines.stages.segment_audio import audio_file_rows, open_media, window_params
from pipelines.stages.video.plan import VideoCutPlan, plan_video_cuts
from pipelines.stages.video.probe import probe_video
from pipelines.stages.video.reencode import reencode_segments
from pipelines.stages.video.stream_copy import copy_segments

logger = logging.getLogger(__name__)


def segment_video(
    asset: Mapping[str, Any],
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
    s3_endpoint_url: str | None = None,
    *,
    on_plan: Callable[[VideoCutPlan], None] | None = None,
) -> Iterator[dict[str, Any] | RecordError]:
    """Segment rows (``input_kind="video"``, mp4) for one video asset, produced lazily.

    The configuration was checked before any work; data errors raise RecordError, and a segment that
    fails while the others go on is yielded as one. ``on_plan`` (optional) is called with the
    plan before the first segment: tests and benchmarks use it to see which path was taken; the
    plan is also logged at DEBUG level. ``emb`` is accepted for a uniform stage signature: a video
    without audio is cut the same way in either embedding mode.
    """
    del emb
    window, hop = window_params(seg.video_window_s, seg.video_overlap_s)
    return _segment_video(dict(asset), seg, window, hop, s3_endpoint_url, on_plan)


def _segment_video(
    asset: dict[str, Any],
    seg: SegmentationConfig,
    window: float,
    hop: float,
    s3_endpoint_url: str | None,
    on_plan: Callable[[VideoCutPlan], None] | None,
) -> Iterator[dict[str, Any] | RecordError]:

    uri = asset.get("uri")
    with local_source(asset, s3_endpoint_url, "a video asset") as source:
        with open_media(source) as container:
            audio_only = not real_video_streams(container) and bool(container.streams.audio)
            if not audio_only:
                if not container.streams.video and not container.streams.audio:
                    raise RecordError(
                        STAGE,
                        codes.NO_VIDEO_STREAM,
                        "the file has neither a video nor an audio stream",
                    )
                probe = probe_video(container)
        if audio_only:
            logger.debug("video %s holds only audio: cut as audio", uri)
            a_window, a_hop = window_params(seg.audio_window_s, seg.audio_overlap_s)
            yield from audio_file_rows(asset, source, seg.audio_format.lower(), a_window, a_hop)
            return
        plan = plan_video_cuts(probe, window, hop, seg.video_reencode, seg.video_max_height)
        logger.debug("video %s: %s, %d segments (%s)", uri, plan.method,
                     len(plan.segments), plan.reason)  # fmt: skip
        if on_plan is not None:
            on_plan(plan)
        part = asset_part(asset)
        if plan.method == "copy" and part is not None and part[0] > 0:
            # Stream copy runs hundreds of times real time: the first part cuts the whole
            # file, the others have nothing to do. Re-encoding honours the part's time range.
            return
        if plan.method == "copy" and part is not None:
            asset = {k: v for k, v in asset.items() if k != PART_COLUMN}
        cutter = copy_segments if plan.method == "copy" else reencode_segments
        # A fresh demuxer for the cut: not every container can seek back after the probe.
        with open_media(source) as container:
            yield from cutter(asset, container, probe, plan, seg)
