"""Cut a video by re-encoding: decode once, encode each window into its own in-memory mp4.

Re-encoded segments are H.264 (``veryfast``, CRF 28, capped at ``MAX_VIDEO_BITRATE``) scaled to
at most ``seg.video_max_height`` (even width, aspect kept), at most 30 fps, and AAC 96 kb/s at the
source rate (44.1 kHz when unusual), so 30 s stay far below the 25 MB request limit; a segment
that still exceeds ``MAX_SEGMENT_BYTES`` is dead-lettered ``segment_too_large``. Several encoders
run at once when windows overlap. Audio loses up to one AAC frame rather than decode to more than
``END_SLACK_S`` past the window.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from pipelines.config.schema import SegmentationConfig
from pipelines.core import codes
from pipelines.core.errors import RecordError
from pipelines.modalities.base import part_segments
from pipelines.stages.video.plan import END_SLACK_S, VideoCutPlan
from pipelines.stages.video.probe import audio_stream, main_video_stream
from pipelines.stages.video.probe_result import VideoProbe
from pipelines.stages.video.rows import SegmentRows

logger = logging.getLogger(__name__)

MAX_VIDEO_BITRATE = 2_500_000
AUDIO_BITRATE = 96_000
MAX_OUTPUT_FPS = 30.0
AAC_FRAME = 1024
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


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


def reencode_segments(
    asset: dict[str, Any], container: Any, probe: VideoProbe, plan: VideoCutPlan,
    seg: SegmentationConfig,
) -> Iterator[dict[str, Any] | RecordError]:  # fmt: skip
    """Decode once; encode each window's frames and samples into its own mp4."""
    import av

    rows = SegmentRows(asset, probe, plan)
    bounds = plan.segments
    # A part of a split asset (Modality.split) encodes its own segments [first, last] only,
    # decoding from the keyframe before a second ahead of its first.
    mine = part_segments(asset, rows.count)
    first, last = mine.start, min(mine.stop, len(bounds)) - 1
    if first > last:
        if probe.truncated and len(bounds) in mine:
            rows.check_truncation()
        return
    vstream = main_video_stream(container)
    vstream.thread_type = "AUTO"
    astream = audio_stream(container)
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
    next_k = first
    if first:
        _seek_before(container, vstream, probe.origin_s + bounds[first][0] - PART_PREROLL_S)
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
            raise rows.failed(failing, codes.MEDIA_CORRUPT, f"decoding failed: {exc}") from exc
        return
    if next_k <= last:  # the packets ended before these segments began
        raise rows.failed(next_k, codes.MEDIA_TRUNCATED, "the file ended before this segment")
    if len(bounds) in mine:
        rows.check_truncation()


# A later part starts decoding at the keyframe before this many seconds ahead of its first
# segment (the audio decoder settles; earlier frames and samples go nowhere).
PART_PREROLL_S = 1.0


def _seek_before(container: Any, stream: Any, at_s: float) -> None:
    """Seek to the keyframe at or before ``at_s`` (seconds on the stream's clock); a demuxer that
    cannot seek decodes from the start (frames before the part's first segment go nowhere)."""
    import av

    if at_s <= 0 or stream.time_base is None:
        return
    try:
        container.seek(int(at_s / stream.time_base), stream=stream, backward=True)
    except av.error.FFmpegError:
        logger.debug("seek to %.2f s failed: decoding from the start", at_s)
