"""Measure a video without decoding it: keyframes, real duration, packet sizes, codecs, size, rate.

:func:`probe_video` reads an MP4/MOV sample table when it can
(:mod:`pipelines.stages.video.sample_table`) and otherwise demuxes every packet once
(:func:`probe_by_demux`).
"""

from __future__ import annotations

import logging
from typing import Any

from pipelines.core import codes
from pipelines.core.errors import RecordError
from pipelines.modalities.probing import real_video_streams
from pipelines.stages._decode_common import STAGE
from pipelines.stages.segment_audio import open_error_code, rewind
from pipelines.stages.video.probe_result import PacketFacts, VideoProbe, make_probe
from pipelines.stages.video.sample_table import probe_from_sample_table

logger = logging.getLogger(__name__)

# Demuxers FFmpeg uses for still images (a JPEG named .mp4 opens as a one-frame video).
_IMAGE_DEMUXERS = frozenset({"image2", "gif", "webp", "apng", "bmp", "tiff", "ico"})


def probe_video(container: Any) -> VideoProbe:
    """Measure the video without decoding it. Rewinds the container.

    MP4/MOV files carry a sample table (every packet's time, size, file offset and keyframe
    flag) in their header: :func:`~pipelines.stages.video.sample_table.probe_from_sample_table`
    reads it and touches only the keyframes, the first and the last GOP. Other containers, and
    MP4s whose table does not cover the file (fragmented, truncated), are demuxed packet by
    packet (:func:`probe_by_demux`).

    Raises RecordError for no video stream, no decoder, or unreadable packets.
    """
    if not real_video_streams(container):
        raise RecordError(STAGE, codes.NO_VIDEO_STREAM, "the file has no video stream")
    fmt_names = set(str(container.format.name or "").split(","))
    if fmt_names & _IMAGE_DEMUXERS or any(n.endswith("_pipe") for n in fmt_names):
        # FFmpeg opens a still image as a one-frame "video"; embedding it as a clip would
        # silently index the wrong thing under the wrong modality.
        raise RecordError(
            STAGE,
            codes.NOT_A_VIDEO,
            f"the file is a still image ({container.format.name}), not a video",
        )
    vstream = main_video_stream(container)
    vctx = vstream.codec_context
    if vctx is None or vctx.codec is None:
        raise RecordError(
            STAGE, codes.CODEC_UNSUPPORTED, f"no decoder for video stream #{vstream.index}"
        )
    astream = audio_stream(container)
    if "mov" in fmt_names:
        try:
            probe = probe_from_sample_table(container, vstream, astream)
        except Exception:  # any surprise in the sample table: the demux pass decides
            logger.debug("sample-table probe failed; demuxing instead", exc_info=True)
            probe = None
        rewind(container)
        if probe is not None:
            return probe
    return probe_by_demux(container, vstream, astream)


def probe_by_demux(container: Any, vstream: Any, astream: Any) -> VideoProbe:
    """Demux every packet once (no decoding). Rewinds the container."""
    import av

    streams = [vstream] + ([astream] if astream is not None else [])
    # Per-packet work is kept to attribute reads and list appends (no Fraction arithmetic):
    # this pass costs about as much as the stream copy that follows it.
    v_index = vstream.index
    v_pts: list[int] = []
    v_end: list[int] = []
    v_size: list[int] = []
    keys: list[int] = []
    a_pts: list[int] = []
    a_end: list[int] = []
    a_size: list[int] = []
    try:
        for packet in container.demux(*streams):
            pts = packet.pts
            size = packet.size
            if pts is None or not size:
                continue
            if packet.stream_index == v_index:
                v_pts.append(pts)
                v_end.append(pts + (packet.duration or 0))
                v_size.append(size)
                if packet.is_keyframe:
                    keys.append(pts)
            else:
                a_pts.append(pts)
                a_end.append(pts + (packet.duration or 0))
                a_size.append(size)
        rewind(container)
    except av.error.FFmpegError as exc:
        raise RecordError(STAGE, open_error_code(exc), f"cannot demux video: {exc}") from exc
    if not v_pts:
        raise RecordError(STAGE, codes.MEDIA_EMPTY, "the video stream holds no packets")
    packets = PacketFacts(
        v_pts=v_pts, v_size=v_size, v_first=min(v_pts), v_end=max(v_end), keys=keys,
        a_pts=a_pts, a_size=a_size, a_end=max(a_end) if a_end else None,
    )  # fmt: skip
    return make_probe(container, vstream, astream, packets)


def main_video_stream(container: Any) -> Any:
    """The first video stream that is not cover art (an attached picture)."""
    return real_video_streams(container)[0]


def audio_stream(container: Any) -> Any:
    """The first audio stream FFmpeg can decode, or None (a silent video is fine)."""
    for stream in container.streams.audio:
        ctx = stream.codec_context
        if ctx is not None and ctx.codec is not None:
            return stream
    return None
