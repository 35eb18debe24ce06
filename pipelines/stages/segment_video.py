"""Cut a video asset into mp4 segments of at most 30 s for Nova, by stream copy or re-encode.

Input: any file PyAV (FFmpeg) can demux, by local path, ``file://`` or ``s3://`` (through
:func:`pipelines.core.io.open_local`). Output: one segment row per segment
(``input_kind="video"``, ``input_format="mp4"``), produced lazily, or dead-letter rows
(``stage="decode"``).

How it works (memory is bounded by the segments being built, never by the asset; a 1-hour video
is read packet by packet):

1. **Probe** (:func:`probe_video`, no decoding; MP4/MOV from the sample table, other files by
   demuxing every packet): keyframe times, the real duration
   (last packet end), per-packet sizes, codecs, frame size and rate.
2. **Plan** (:func:`plan_video_cuts`, a pure function): stream copy or re-encode, and the exact
   segment bounds, so ``segment_count`` is known before the first row.
3. **Cut**: stream copy remuxes packets into an in-memory mp4 per segment (no decoding: hundreds
   of times real time); re-encode decodes once and feeds the frames of each window to its own
   libx264 + AAC encoder (several at once when windows overlap).

Decision rule (``seg.video_reencode``):

- ``always``: re-encode.
- ``auto``: stream copy when all of these hold, else re-encode:
  the codecs can go into mp4 and Nova as they are (video ``h264``/``hevc``; audio ``aac``/``mp3``
  or none); greedy cutting at keyframes gives segments that each end at the last keyframe within
  ``window`` of their start (or at the end of the asset), and every such cut lands within
  ``max(1 s, 10% of the window)`` of where a fixed window would have put it (so segments are
  ``window - tolerance .. window`` long; with overlap, each start is also within the tolerance of
  ``previous start + hop``); the source height is within ``video_max_height``; and every
  segment's bytes are under ``MAX_SEGMENT_BYTES``.
- ``never``: the same plan without the height rule; when stream copy is impossible the asset gets
  one dead-letter row ``reencode_required`` (the message says why). Cutting anyway would send
  segments longer than the API's 30 s or larger than its 25 MB body, which fail later and cost
  a request each; the user asked for no re-encoding, so we say so instead of guessing.

Re-encoded segments are H.264 (``veryfast``, CRF 28, capped at ``MAX_VIDEO_BITRATE``) scaled to
at most ``seg.video_max_height`` (even width, aspect kept), at most 30 fps, and AAC 96 kb/s at the
source rate (44.1 kHz when unusual), so 30 s stay far below the 25 MB request limit; a segment
that still exceeds ``MAX_SEGMENT_BYTES`` is dead-lettered ``segment_too_large``.

Windows, tails and truncation follow :mod:`pipelines.stages.segment_audio`: a last piece adding
less than 0.5 s is merged into the previous segment when that stays within 30 s, else dropped.
A segment never carries frames or samples past its planned end: a dropped tail goes nowhere (and
is not even read), an audio packet straddling a stream-copy cut goes to neither side, and
re-encoded audio loses up to one AAC frame rather than decode to more than ``END_SLACK_S`` past
the window, so no segment decodes to more than 30 s.
Codes: ``file_not_found``, ``empty_file``, ``media_corrupt``, ``no_video_stream``, ``not_a_video``,
``codec_unsupported``, ``media_empty``, ``media_truncated``, ``reencode_required``,
``segment_too_large``.
"""

from __future__ import annotations

import bisect
import io
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core.errors import ConfigError, DataError
from pipelines.core.rows import dead_letter_row, segment_row
from pipelines.stages._decode_common import local_source
from pipelines.stages.segment_audio import (
    MAX_WINDOW_S,
    MIN_TAIL_S,
    TRUNCATION_TOLERANCE_S,
    open_error_code,
    open_media,
    plan_windows,
    window_params,
)

logger = logging.getLogger(__name__)

STAGE = "decode"
REENCODE_MODES = ("auto", "always", "never")
# Codecs that go into an mp4 for Nova without re-encoding.
COPY_VIDEO_CODECS = frozenset({"h264", "hevc"})
COPY_AUDIO_CODECS = frozenset({"aac", "mp3"})
# Raw bytes per segment: 25 MB request body after base64 (x4/3) leaves 18.75 MB; keep headroom.
MAX_SEGMENT_BYTES = 15_000_000
MAX_VIDEO_BITRATE = 2_500_000
AUDIO_BITRATE = 96_000
MAX_OUTPUT_FPS = 30.0
# A segment may decode to at most this much more than its planned span (audio packets or AAC
# frames reaching past the cut); well under the 50 ms between MAX_WINDOW_S and the API's 30 s.
END_SLACK_S = 0.025
AAC_FRAME = 1024
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

Method = Literal["copy", "reencode"]


# --------------------------------------------------------------------------------------------
# Probe


@dataclass
class VideoProbe:
    """What the demux-only pass learned about a video file. Times are relative to ``origin_s``."""

    video_codec: str
    audio_codec: str | None  # None: no (decodable) audio stream
    origin_s: float  # absolute time of the first video packet (time 0 of the segments)
    duration_s: float  # end of the last packet (video or audio), relative to origin
    declared_s: float | None  # container header duration
    keyframes_s: list[float]  # keyframe presentation times, ascending
    width: int
    height: int
    fps: float
    # Every packet's relative time and size, for the byte size of a planned copy segment.
    packet_times: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    packet_sizes: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    # (sorted times, cumulative sizes), computed once for bytes_between
    _cumulative: tuple[np.ndarray, np.ndarray] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    @property
    def truncated(self) -> bool:
        """The header promises clearly more than the packets hold."""
        return self.declared_s is not None and self.declared_s - self.duration_s > max(
            TRUNCATION_TOLERANCE_S, 0.02 * self.declared_s
        )

    def bytes_between(self, start_s: float, end_s: float) -> int:
        """Bytes of the packets timed in ``[start_s, end_s)`` (what a copy segment carries)."""
        if self.packet_times.size == 0:
            return 0
        if self._cumulative is None:
            order = np.argsort(self.packet_times, kind="stable")
            self._cumulative = (self.packet_times[order], np.cumsum(self.packet_sizes[order]))
        times, sizes = self._cumulative
        lo = int(np.searchsorted(times, start_s - 1e-6, "left"))
        hi = int(np.searchsorted(times, end_s - 1e-6, "left"))
        if hi <= lo:
            return 0
        return int(sizes[hi - 1] - (sizes[lo - 1] if lo else 0))


# Demuxers FFmpeg uses for still images (a JPEG named .mp4 opens as a one-frame video).
_IMAGE_DEMUXERS = frozenset({"image2", "gif", "webp", "apng", "bmp", "tiff", "ico"})


def probe_video(container: Any) -> VideoProbe:
    """Measure the video without decoding it. Rewinds the container.

    MP4/MOV files carry a sample table (every packet's time, size, file offset and keyframe
    flag) in their header: :func:`_probe_from_index` reads it and touches only the keyframes, the
    first and the last GOP. Other containers, and MP4s whose table does not cover the file
    (fragmented, truncated), are demuxed packet by packet (:func:`_probe_by_demux`).

    Raises DataError for no video stream, no decoder, or unreadable packets.
    """
    if not container.streams.video:
        raise DataError("no_video_stream", "the file has no video stream")
    fmt_names = set(str(container.format.name or "").split(","))
    if fmt_names & _IMAGE_DEMUXERS or any(n.endswith("_pipe") for n in fmt_names):
        # FFmpeg opens a still image as a one-frame "video"; embedding it as a clip would
        # silently index the wrong thing under the wrong modality.
        raise DataError(
            "not_a_video",
            f"the file is a still image ({container.format.name}), not a video",
        )
    vstream = container.streams.video[0]
    vctx = vstream.codec_context
    if vctx is None or vctx.codec is None:
        raise DataError("codec_unsupported", f"no decoder for video stream #{vstream.index}")
    astream = _audio_stream(container)
    if "mov" in fmt_names:
        try:
            probe = _probe_from_index(container, vstream, astream)
        except Exception:  # any surprise in the sample table: the demux pass decides
            logger.debug("sample-table probe failed; demuxing instead", exc_info=True)
            probe = None
        container.seek(0)
        if probe is not None:
            return probe
    return _probe_by_demux(container, vstream, astream)


@dataclass
class _Packets:
    """Raw packet facts of one probe, in stream time-base units (the probe's input)."""

    v_pts: Sequence[int] | np.ndarray  # video packets' times (sizes below, same order)
    v_size: Sequence[int] | np.ndarray
    v_first: int  # earliest video presentation time
    v_end: int  # latest video presentation end
    keys: Sequence[int]  # keyframe presentation times
    a_pts: Sequence[int] | np.ndarray = ()
    a_size: Sequence[int] | np.ndarray = ()
    a_end: int | None = None


def _make_probe(container: Any, vstream: Any, astream: Any, p: _Packets) -> VideoProbe:
    if not len(p.v_pts):
        raise DataError("media_empty", "the video stream holds no packets")
    has_audio = astream is not None and len(p.a_pts) > 0
    if not vstream.time_base or (has_audio and not astream.time_base):
        raise DataError("media_corrupt", "a stream has no time base")
    v_tb = float(vstream.time_base)
    a_tb = float(astream.time_base) if has_audio else 0.0
    v_first = float(p.v_first * vstream.time_base)
    end = float(p.v_end * vstream.time_base)
    if has_audio and p.a_end is not None:
        end = max(end, float(p.a_end * astream.time_base))
    declared = float(container.duration) / 1_000_000 if container.duration else None
    if declared is not None and container.start_time is not None:
        declared -= max(0.0, v_first - float(container.start_time) / 1_000_000)
    times = np.concatenate(
        [
            np.asarray(p.v_pts, dtype=np.float64) * v_tb,
            np.asarray(p.a_pts if has_audio else (), dtype=np.float64) * a_tb,
        ]
    )
    sizes = np.concatenate(
        [
            np.asarray(p.v_size, dtype=np.int64),
            np.asarray(p.a_size if has_audio else (), dtype=np.int64),
        ]
    )
    vctx = vstream.codec_context
    rate = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
    return VideoProbe(
        video_codec=str(vctx.codec.name),
        audio_codec=str(astream.codec_context.codec.name) if astream is not None else None,
        origin_s=v_first,
        duration_s=max(0.0, end - v_first),
        declared_s=declared,
        keyframes_s=sorted(float(k * vstream.time_base) - v_first for k in p.keys),
        width=int(vctx.width),
        height=int(vctx.height),
        fps=float(rate) if rate else 25.0,
        packet_times=times - v_first,
        packet_sizes=sizes,
    )


def _probe_by_demux(container: Any, vstream: Any, astream: Any) -> VideoProbe:
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
        container.seek(0)
    except av.error.FFmpegError as exc:
        raise DataError(open_error_code(exc), f"cannot demux video: {exc}") from exc
    if not v_pts:
        raise DataError("media_empty", "the video stream holds no packets")
    packets = _Packets(
        v_pts=v_pts, v_size=v_size, v_first=min(v_pts), v_end=max(v_end), keys=keys,
        a_pts=a_pts, a_size=a_size, a_end=max(a_end) if a_end else None,
    )  # fmt: skip
    return _make_probe(container, vstream, astream, packets)


# The sample-table probe reads each keyframe's packet (one seek each); past this many keyframes
# per packet (intra-only video) demuxing everything is as cheap.
_INDEX_MAX_KEYFRAME_SHARE = 0.25


def _index_arrays(stream: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(timestamps, sizes, end offsets in the file, keyframe flags) of a stream's sample table."""
    entries = stream.index_entries
    n = len(entries)
    ts = np.empty(n, dtype=np.int64)
    size = np.empty(n, dtype=np.int64)
    end = np.empty(n, dtype=np.int64)
    key = np.empty(n, dtype=bool)
    for i, e in enumerate(entries):
        ts[i] = e.timestamp
        size[i] = e.size
        end[i] = e.pos + e.size
        key[i] = e.is_keyframe
    return ts, size, end, key


def _probe_from_index(container: Any, vstream: Any, astream: Any) -> VideoProbe | None:
    """The probe from an MP4/MOV sample table, or None when the table cannot be trusted.

    The table gives every packet's decode time, size and file offset. Presentation times differ
    from decode times when frames are reordered (B-frames), so the keyframes' own packets are
    read (one seek each), and the first and last GOP are demuxed for the earliest and latest
    presentation times. The table is not trusted (None: demux instead) when the file is shorter
    than the samples it lists (truncated), when it does not reach the header's duration
    (fragmented MP4: fragments are indexed as they are read), or when a keyframe's packet is not
    where the table says.
    """
    v_ts, v_size, v_stop, v_key = _index_arrays(vstream)
    if v_ts.size == 0 or not v_key.any():
        return None
    if astream is not None:
        a_ts, a_size, a_stop, _ = _index_arrays(astream)
        if a_ts.size == 0:
            return None
    else:
        a_ts = a_size = a_stop = np.zeros(0, dtype=np.int64)
    file_size = int(container.size or 0)
    if file_size <= 0 or max(int(v_stop.max()), int(a_stop.max(initial=0))) > file_size:
        return None  # truncated: the demux pass measures what is really there
    keys_dts = v_ts[v_key]
    if keys_dts.size > max(16, _INDEX_MAX_KEYFRAME_SHARE * v_ts.size):
        return None
    v_tb = vstream.time_base
    if container.duration:
        covered = float(int(v_ts.max()) * v_tb) - float(container.start_time or 0) / 1e6
        if covered < float(container.duration) / 1e6 - max(2.0, 0.05 * container.duration / 1e6):
            return None  # the table does not cover the file (fragmented MP4)
    keys: list[int] = []
    key_list = keys_dts.tolist()
    last_ts = int(v_ts.max())
    for j, dts in enumerate(key_list):
        # Seek just before the next keyframe: whether the demuxer seeks by decode or by
        # presentation time (MOV seeks by presentation time when frames are reordered), the
        # keyframe found is this one.
        target = key_list[j + 1] - 1 if j + 1 < len(key_list) else last_ts
        container.seek(target, stream=vstream, backward=True, any_frame=False)
        packet = next((p for p in container.demux(vstream) if p.size), None)
        if packet is None or packet.dts != dts or not packet.is_keyframe or packet.pts is None:
            return None
        keys.append(int(packet.pts))
    # Earliest presentation: within the first GOP (leading frames of an open GOP come first).
    container.seek(0)
    v_first: int | None = None
    seen_keys = 0
    for packet in container.demux(vstream):
        if packet.pts is None or not packet.size:
            continue
        if packet.is_keyframe:
            seen_keys += 1
            if seen_keys > 1:
                break
        v_first = packet.pts if v_first is None else min(v_first, packet.pts)
    if v_first is None:
        return None
    # Latest presentation end: demux everything from the last keyframe on (every stream).
    container.seek(int(keys_dts[-1]), stream=vstream, backward=True, any_frame=False)
    v_end = int(v_ts.max())
    a_end = int(a_ts.max()) if a_ts.size else None
    streams = [vstream] + ([astream] if astream is not None else [])
    for packet in container.demux(*streams):
        if packet.pts is None or not packet.size:
            continue
        stop = packet.pts + (packet.duration or 0)
        if packet.stream_index == vstream.index:
            v_end = max(v_end, stop)
        elif a_end is not None:
            a_end = max(a_end, stop)
    # Packet times for byte counts: each video packet is placed in its GOP by shifting its
    # decode time by its keyframe's (presentation - decode) offset, so the bytes between two
    # keyframes' times are exactly the GOPs a stream-copy segment between them carries.
    gop = np.searchsorted(keys_dts, v_ts, side="right") - 1
    shift = np.asarray(keys, dtype=np.int64) - keys_dts
    v_times = v_ts + np.where(gop >= 0, shift[np.maximum(gop, 0)], shift[0])
    packets = _Packets(
        v_pts=v_times, v_size=v_size, v_first=min(v_first, min(keys)), v_end=v_end, keys=keys,
        a_pts=a_ts, a_size=a_size, a_end=a_end,
    )  # fmt: skip
    return _make_probe(container, vstream, astream, packets)


def _audio_stream(container: Any) -> Any:
    """The first audio stream FFmpeg can decode, or None (a silent video is fine)."""
    for stream in container.streams.audio:
        ctx = stream.codec_context
        if ctx is not None and ctx.codec is not None:
            return stream
    return None


# --------------------------------------------------------------------------------------------
# Plan


@dataclass(frozen=True)
class VideoCutPlan:
    """How a video will be cut: ``method`` and the segment bounds (seconds from time 0)."""

    method: Method
    segments: tuple[tuple[float, float], ...]
    reason: str


def copy_tolerance(window_s: float) -> float:
    """How far a keyframe cut may land from the ideal window boundary."""
    return max(1.0, 0.1 * window_s)


def keyframe_segments(
    keyframes_s: Sequence[float], duration_s: float, window_s: float, hop_s: float
) -> tuple[list[tuple[float, float]], str]:
    """Greedy keyframe-aligned segments, or ([], why not) when keyframes are too sparse.

    Each segment starts at a keyframe and ends at the last keyframe within ``window_s`` of its
    start (or at ``duration_s``); each end must land within :func:`copy_tolerance` of
    ``start + window_s`` and, with overlap, each next start within it of ``start + hop_s``.
    """
    eps = 1e-6
    tol = copy_tolerance(window_s)
    kfs = sorted(k for k in keyframes_s if k < duration_s - eps)
    if not kfs or kfs[0] > eps + 0.5:
        return [], "the video does not start with a keyframe"
    segments: list[tuple[float, float]] = []
    start = 0.0
    while True:
        if duration_s - start <= window_s + eps:
            segments.append((start, duration_s))
            break
        ends = [k for k in kfs if start + eps < k <= start + window_s + eps]
        if not ends or ends[-1] < start + window_s - tol:
            gap = (ends[-1] - start) if ends else None
            return [], (
                f"no keyframe within {tol:g} s before {start + window_s:.2f} s "
                f"(the nearest cut would give {gap if gap is not None else 'no'} s segments)"
            )
        end = ends[-1]
        segments.append((start, end))
        if hop_s >= window_s - eps:
            start = end
        else:
            starts = [k for k in kfs if start + eps < k <= start + hop_s + eps]
            if not starts or starts[-1] < start + hop_s - tol:
                return [], f"no keyframe within {tol:g} s before {start + hop_s:.2f} s (overlap)"
            start = starts[-1]
    # Tail rule (as for fixed windows): merge or drop a last piece adding < MIN_TAIL_S.
    if len(segments) > 1 and segments[-1][1] - segments[-2][1] < MIN_TAIL_S:
        last_start = segments[-2][0]
        segments.pop()
        if duration_s - last_start <= MAX_WINDOW_S + eps:
            segments[-1] = (last_start, duration_s)
    return segments, "keyframes allow cuts within tolerance"


def plan_video_cuts(
    probe: VideoProbe,
    window_s: float,
    hop_s: float,
    reencode: str = "auto",
    max_height: int = 480,
    max_segment_bytes: int = MAX_SEGMENT_BYTES,
) -> VideoCutPlan:
    """Choose stream copy or re-encode for a probed video, and the segment bounds.

    Raises DataError ``reencode_required`` when ``reencode == "never"`` and copying is
    impossible, ``media_empty`` for a zero-length video. See the module docstring for the rule.
    """
    if reencode not in REENCODE_MODES:
        raise ConfigError("segmentation.video_reencode", f"must be one of {REENCODE_MODES}")
    if probe.duration_s <= 0:
        raise DataError("media_empty", "the video has no duration")
    fixed = plan_windows(probe.duration_s, window_s, hop_s)
    if reencode == "always":
        return VideoCutPlan("reencode", tuple(fixed), "video_reencode=always")
    why_not = ""
    if probe.video_codec not in COPY_VIDEO_CODECS:
        why_not = f"video codec {probe.video_codec} cannot be stream-copied into mp4"
    elif probe.audio_codec is not None and probe.audio_codec not in COPY_AUDIO_CODECS:
        why_not = f"audio codec {probe.audio_codec} cannot be stream-copied into mp4"
    segments: list[tuple[float, float]] = []
    if not why_not:
        segments, reason = keyframe_segments(probe.keyframes_s, probe.duration_s, window_s, hop_s)
        if not segments:
            why_not = f"keyframes too sparse: {reason}"
    if not why_not and reencode == "auto" and probe.height > max_height:
        why_not = f"height {probe.height} > video_max_height {max_height}"
    if not why_not:
        for s, e in segments:
            size = probe.bytes_between(s, e + (1e9 if e >= probe.duration_s else 0.0))
            if size > max_segment_bytes:
                why_not = f"segment {s:.1f}-{e:.1f} s would be {size} bytes (> {max_segment_bytes})"
                break
    if not why_not:
        return VideoCutPlan("copy", tuple(segments), "stream copy: " + reason)
    if reencode == "never":
        raise DataError("reencode_required", f"video_reencode=never but {why_not}")
    return VideoCutPlan("reencode", tuple(fixed), "re-encode: " + why_not)


def plan_video(path: str, seg: SegmentationConfig) -> tuple[VideoProbe, VideoCutPlan]:
    """Probe the video at a local ``path`` and plan its cuts (for tests, tools and benchmarks)."""
    window, hop = window_params(seg.video_window_s, seg.video_overlap_s, "segmentation.video")
    with open_media(path) as container:
        probe = probe_video(container)
    return probe, plan_video_cuts(probe, window, hop, seg.video_reencode, seg.video_max_height)


# --------------------------------------------------------------------------------------------
# The stage


def segment_video(
    asset: Mapping[str, Any],
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
    s3_endpoint_url: str | None = None,
    *,
    on_plan: Callable[[VideoCutPlan], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Segment rows (``input_kind="video"``, mp4) for one video asset, produced lazily.

    Configuration errors raise ConfigError now; data errors become dead-letter rows. ``on_plan``
    (optional) is called with the plan before the first segment: tests and benchmarks use it to
    see which path was taken; the plan is also logged at DEBUG level. ``emb`` is accepted for a
    uniform stage signature: a video without audio is cut the same way in either embedding mode.
    """
    del emb
    window, hop = window_params(seg.video_window_s, seg.video_overlap_s, "segmentation.video")
    if seg.video_reencode not in REENCODE_MODES:
        raise ConfigError(
            "segmentation.video_reencode",
            f"must be one of {REENCODE_MODES}, got {seg.video_reencode!r}",
        )
    if seg.video_max_height < 16:
        raise ConfigError("segmentation.video_max_height", f"too small: {seg.video_max_height}")
    return _segment_video(dict(asset), seg, window, hop, s3_endpoint_url, on_plan)


def _segment_video(
    asset: dict[str, Any],
    seg: SegmentationConfig,
    window: float,
    hop: float,
    s3_endpoint_url: str | None,
    on_plan: Callable[[VideoCutPlan], None] | None,
) -> Iterator[dict[str, Any]]:

    uri = asset.get("uri")
    with local_source(asset, s3_endpoint_url, STAGE, "a video asset") as source:
        if isinstance(source, dict):
            yield source
            return
        try:
            container = open_media(source)
            with container:
                probe = probe_video(container)
                plan = plan_video_cuts(probe, window, hop, seg.video_reencode, seg.video_max_height)
                logger.debug("video %s: %s, %d segments (%s)", uri, plan.method,
                             len(plan.segments), plan.reason)  # fmt: skip
                if on_plan is not None:
                    on_plan(plan)
                cutter = _copy_segments if plan.method == "copy" else _reencode_segments
                yield from cutter(asset, container, probe, plan, seg)
        except DataError as exc:
            yield dead_letter_row(asset, STAGE, exc.code, exc.message)


class _Rows:
    """Builds the rows of one asset with a fixed ``segment_count``."""

    def __init__(self, asset: dict[str, Any], probe: VideoProbe, plan: VideoCutPlan) -> None:
        self.asset = asset
        self.probe = probe
        self.segments = plan.segments
        self.count = len(plan.segments) + (1 if probe.truncated else 0)

    def segment(self, k: int, data: bytes) -> dict[str, Any]:
        start, end = self.segments[k]
        if len(data) > MAX_SEGMENT_BYTES:
            return self.dead(k, "segment_too_large", f"{len(data)} bytes > {MAX_SEGMENT_BYTES}")
        return segment_row(
            self.asset, segment_index=k, segment_count=self.count, input_kind="video",
            input_format="mp4", input_bytes=data, start_s=start, end_s=end,
        )  # fmt: skip

    def dead(self, k: int, code: str, message: str) -> dict[str, Any]:
        start, end = self.segments[k]
        return dead_letter_row(
            self.asset, STAGE, code, message, segment_index=k, segment_count=self.count,
            start_s=start, end_s=end,
        )  # fmt: skip

    def truncation_tail(self) -> Iterator[dict[str, Any]]:
        """The extra row accounting for the part of a truncated file that is missing."""
        if self.probe.truncated:
            yield dead_letter_row(
                self.asset, STAGE, "media_truncated",
                f"the file holds {self.probe.duration_s:.2f} s of video; its header says "
                f"{self.probe.declared_s} s", segment_index=len(self.segments),
                segment_count=self.count, start_s=self.probe.duration_s,
                end_s=self.probe.declared_s,
            )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Stream copy


class _CopyOut:
    """One segment being remuxed into an in-memory mp4."""

    def __init__(self, streams: Sequence[Any], start_abs: float) -> None:
        import av

        self.buf = io.BytesIO()
        self.out = av.open(self.buf, "w", format="mp4")
        self.map: dict[int, Any] = {}
        self.offset: dict[int, int] = {}
        for s in streams:
            o = self.out.add_stream_from_template(s)
            self.map[s.index] = o
            self.offset[s.index] = round(start_abs / s.time_base)

    def add(self, packet: Any, index: int, pts: int, dts: int | None) -> None:
        """Mux the demuxed ``packet`` itself, retimed in place (no copy of its data).

        ``pts``/``dts`` are its original timestamps (``index`` its source stream): muxing rebases
        the packet to the output's time base, so a packet going into two overlapping segments
        gets its timing reset before each.
        """
        off = self.offset[index]
        packet.pts = pts - off
        packet.dts = None if dts is None else dts - off
        packet.stream = self.map[index]
        self.out.mux_one(packet)

    def close(self) -> bytes:
        self.out.close()
        return self.buf.getvalue()

    def abort(self) -> None:
        try:
            self.out.close()
        except Exception:  # the container may be unusable; we only release it
            logger.debug("closing an aborted segment failed", exc_info=True)


def _copy_segments(
    asset: dict[str, Any], container: Any, probe: VideoProbe, plan: VideoCutPlan,
    seg: SegmentationConfig,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Remux packets into one mp4 per planned segment (segments start and end at keyframes).

    A video packet belongs to the segments whose ``[start, end)`` holds the time of the keyframe
    that opened its GOP (decode order), so GOPs are never split; an audio packet to those whose
    span holds its whole duration, up to ``END_SLACK_S`` past the end (a packet straddling a cut
    goes to neither side rather than lengthen a segment). Packets after the last segment's end
    (a dropped tail) go nowhere, and reading stops there.
    """
    import av

    rows = _Rows(asset, probe, plan)
    vstream = container.streams.video[0]
    astream = _audio_stream(container)
    streams = [vstream] + ([astream] if astream is not None else [])
    v_index = vstream.index
    v_tb = float(vstream.time_base)
    a_tb = float(astream.time_base) if astream is not None else 0.0
    origin = probe.origin_s
    eps = 1e-6
    bounds = plan.segments
    last = len(bounds) - 1
    starts = [-math.inf] + [s - eps for s, _ in bounds[1:]]  # segment 0 takes what precedes 0
    ends = [e - eps for _, e in bounds]
    # Audio routing is the same for every packet lying between two consecutive cut points.
    cuts = sorted(set(starts[1:] + ends))
    open_: dict[int, _CopyOut] = {}
    next_k = 0
    open_at = -math.inf  # time from which segment next_k opens
    close_at = math.inf  # time every stream must reach for the first open segment to close
    v_t = -math.inf  # the latest GOP start seen
    a_t = -math.inf if astream is not None else math.inf
    v_targets: list[_CopyOut] = []
    a_targets: list[_CopyOut] = []
    a_lo, a_hi = math.inf, -math.inf  # a_targets holds for packets within [a_lo, a_hi)
    end_slack = END_SLACK_S
    try:
        for packet in container.demux(*streams):
            pts = packet.pts
            if pts is None or not packet.size:
                continue
            index = packet.stream_index
            if index == v_index:
                if packet.is_keyframe:
                    t = pts * v_tb - origin
                    if t > v_t:
                        v_t = t
                    while t >= open_at:
                        open_[next_k] = _CopyOut(streams, origin + bounds[next_k][0])
                        next_k += 1
                        open_at = starts[next_k] if next_k <= last else math.inf
                        close_at = ends[min(open_)]
                        a_lo, a_hi = math.inf, -math.inf
                    v_targets = [o for k, o in open_.items() if starts[k] <= t < ends[k]]
                targets = v_targets
            else:
                t = pts * a_tb - origin
                if t > a_t:
                    a_t = t
                t_end = t + (packet.duration or 0) * a_tb
                if not a_lo <= t or not t_end < a_hi:
                    while t >= open_at:
                        open_[next_k] = _CopyOut(streams, origin + bounds[next_k][0])
                        next_k += 1
                        open_at = starts[next_k] if next_k <= last else math.inf
                        close_at = ends[min(open_)]
                    a_targets = [
                        o for k, o in open_.items()
                        if starts[k] <= t < ends[k] and t_end <= ends[k] + eps + end_slack
                    ]  # fmt: skip
                    i = bisect.bisect_right(cuts, t)
                    a_lo = cuts[i - 1] if i else -math.inf
                    a_hi = cuts[i] if i < len(cuts) else math.inf
                targets = a_targets
            if len(targets) == 1:
                targets[0].add(packet, index, pts, packet.dts)
            elif targets:
                dts, duration, time_base = packet.dts, packet.duration, packet.time_base
                for out in targets:
                    packet.duration, packet.time_base = duration, time_base
                    out.add(packet, index, pts, dts)
            # Close segments that every stream has moved past.
            if open_ and (v_t if v_t < a_t else a_t) >= close_at:
                while open_:
                    k = min(open_)
                    if min(v_t, a_t) < ends[k]:
                        break
                    yield rows.segment(k, open_.pop(k).close())
                v_targets = [o for o in v_targets if o in open_.values()]
                a_lo, a_hi = math.inf, -math.inf
                close_at = ends[min(open_)] if open_ else math.inf
                if not open_ and next_k > last:
                    break  # the rest is a dropped tail
        for k in sorted(open_):
            yield rows.segment(k, open_.pop(k).close())
    except (av.error.FFmpegError, ValueError) as exc:
        failing = min(open_) if open_ else next_k
        for out in open_.values():
            out.abort()
        if failing <= last:
            yield rows.dead(failing, "media_corrupt", f"remux failed: {exc}")
        return
    for k in range(next_k, last + 1):  # the packets ended before these segments began
        yield rows.dead(k, "media_truncated", "the file ended before this segment")
        return
    yield from rows.truncation_tail()


# --------------------------------------------------------------------------------------------
# Re-encode


def _output_size(width: int, height: int, max_height: int) -> tuple[int, int]:
    """Even (width, height) at most ``max_height`` tall, keeping the aspect ratio."""
    h = min(height, max_height)
    w = max(2, round(width * h / max(1, height)))
    return w - w % 2, max(2, h - h % 2)


class _EncodeOut:
    """One window being re-encoded into an in-memory mp4 (H.264 + optional AAC)."""

    def __init__(
        self, start_s: float, size: tuple[int, int], fps: Fraction, audio: tuple[int, str] | None
    ) -> None:
        import av

        self.start_s = start_s
        self.fps = fps
        self.buf = io.BytesIO()
        self.out = av.open(self.buf, "w", format="mp4")
        self.v = self.out.add_stream("libx264", rate=fps)
        self.v.width, self.v.height = size
        self.v.pix_fmt = "yuv420p"
        self.v.options = {
            "preset": "veryfast",
            "crf": "28",
            "maxrate": str(MAX_VIDEO_BITRATE),
            "bufsize": str(2 * MAX_VIDEO_BITRATE),
        }
        self.last_pts = -1
        self.a: Any = None
        if audio is not None:
            rate, layout = audio
            self.a = self.out.add_stream("aac", rate=rate, layout=layout)
            self.a.bit_rate = AUDIO_BITRATE

    def video_pts(self, t: float) -> int | None:
        """The output tick of a frame at time ``t``, or None when the frame is to be skipped."""
        # floor, not round: a window starting between two frames must not map them to one tick
        pts = math.floor((t - self.start_s) * self.fps + 1e-3)
        if pts <= self.last_pts:  # frame-rate cap and variable-rate sources: one frame per tick
            return None
        return pts

    def add_video(self, frame: Any, pts: int) -> None:
        """Encode ``frame`` at tick ``pts`` (from :meth:`video_pts`)."""
        self.last_pts = pts
        frame.pts = pts
        frame.time_base = 1 / self.fps
        self.out.mux(self.v.encode(frame))

    def add_audio(self, frame: Any) -> None:
        if self.a is not None:
            self.out.mux(self.a.encode(frame))

    def close(self) -> bytes:
        self.out.mux(self.v.encode(None))
        if self.a is not None:
            self.out.mux(self.a.encode(None))
        self.out.close()
        return self.buf.getvalue()

    def abort(self) -> None:
        try:
            self.out.close()
        except Exception:  # the encoder may be unusable; we only release it
            logger.debug("closing an aborted segment failed", exc_info=True)


def _reencode_segments(
    asset: dict[str, Any], container: Any, probe: VideoProbe, plan: VideoCutPlan,
    seg: SegmentationConfig,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Decode once; encode each window's frames and samples into its own mp4."""
    import av

    rows = _Rows(asset, probe, plan)
    bounds = plan.segments
    last = len(bounds) - 1
    vstream = container.streams.video[0]
    vstream.thread_type = "AUTO"
    astream = _audio_stream(container)
    streams = [vstream] + ([astream] if astream is not None else [])
    size = _output_size(probe.width, probe.height, seg.video_max_height)
    fps = Fraction(min(probe.fps, MAX_OUTPUT_FPS)).limit_denominator(1001)
    audio_cfg: tuple[int, str] | None = None
    resampler: Any = None
    a_rate = 0
    if astream is not None:
        src_rate = int(astream.codec_context.sample_rate or 44100)
        a_rate = src_rate if src_rate in AAC_RATES else 44100
        channels = int(astream.codec_context.channels or 1)
        layout = "stereo" if channels >= 2 else "mono"
        audio_cfg = (a_rate, layout)
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=a_rate)
    # Audio is cut to the window, and shortened by up to one AAC frame when the encoder's padding
    # of the last frame would otherwise decode to more than END_SLACK_S past the window's end.
    sample_bounds = []
    for s, e in bounds:
        s0, s1 = round(s * a_rate), round(e * a_rate)
        n = min(s1 - s0, (s1 - s0 + int(END_SLACK_S * a_rate)) // AAC_FRAME * AAC_FRAME)
        sample_bounds.append((s0, s0 + n))
    a_origin: int | None = None  # sample index (relative timeline) of the first audio sample
    a_pos = 0  # samples resampled so far
    open_: dict[int, _EncodeOut] = {}
    next_k = 0
    v_t = -math.inf
    a_t = -math.inf if astream is not None else math.inf

    def ensure_open(t: float) -> None:
        nonlocal next_k
        while next_k <= last and (t >= bounds[next_k][0] - 1e-6 or next_k == 0):
            open_[next_k] = _EncodeOut(bounds[next_k][0], size, fps, audio_cfg)
            next_k += 1

    def on_audio(frame: Any) -> None:
        nonlocal a_origin, a_pos
        for out in resampler.resample(frame):
            if a_origin is None:
                t0 = out.time if out.time is not None else 0.0
                a_origin = round((t0 - probe.origin_s) * a_rate)
            pcm = out.to_ndarray()  # (channels, n) float planes
            c0 = a_origin + a_pos
            c1 = c0 + pcm.shape[1]
            a_pos += pcm.shape[1]
            ensure_open(c0 / a_rate)
            for k, enc in open_.items():
                # Samples before time 0 or after the window (a dropped tail) go nowhere.
                s0, s1 = sample_bounds[k]
                lo, hi = max(c0, s0), min(c1, s1)
                if hi <= lo:
                    continue
                part = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(pcm[:, lo - c0 : hi - c0]), format="fltp",
                    layout=audio_cfg[1] if audio_cfg else "mono",
                )  # fmt: skip
                part.sample_rate = a_rate
                part.pts = lo - s0
                part.time_base = Fraction(1, a_rate)
                enc.add_audio(part)

    try:
        for packet in container.demux(*streams):
            is_video = packet.stream.index == vstream.index
            for frame in packet.decode():
                if is_video:
                    t = (frame.time if frame.time is not None else 0.0) - probe.origin_s
                    v_t = max(v_t, t)
                    ensure_open(t)
                    image = None  # scaled only if some window takes the frame
                    for k, enc in open_.items():
                        s, e = bounds[k]
                        # Frames after the window (a dropped tail) go nowhere.
                        if (t >= s - 1e-6 or k == 0) and t < e - 1e-6:
                            pts = enc.video_pts(max(t, s))
                            if pts is None:
                                continue
                            if image is None:
                                image = frame.reformat(
                                    width=size[0], height=size[1], format="yuv420p"
                                )
                            enc.add_video(image, pts)
                else:
                    on_audio(frame)
                    a_t = (a_origin + a_pos) / a_rate if a_origin is not None else a_t
            while open_:
                k = min(open_)
                if min(v_t, a_t) < bounds[k][1] - 1e-6:
                    break
                yield rows.segment(k, open_.pop(k).close())
            if not open_ and next_k > last:
                break  # the rest is a dropped tail
        if resampler is not None:
            on_audio(None)
        for k in sorted(open_):
            yield rows.segment(k, open_.pop(k).close())
    except (av.error.FFmpegError, ValueError) as exc:
        failing = min(open_) if open_ else next_k
        for enc in open_.values():
            enc.abort()
        if failing <= last:
            yield rows.dead(failing, "media_corrupt", f"decoding failed: {exc}")
        return
    for k in range(next_k, last + 1):
        yield rows.dead(k, "media_truncated", "the file ended before this segment")
        return
    yield from rows.truncation_tail()
