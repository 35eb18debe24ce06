"""The result of probing a video (:class:`VideoProbe`), computed from its packets' raw facts.

Both ways of probing (:mod:`pipelines.stages.video.probe` demuxing every packet,
:mod:`pipelines.stages.video.sample_table` reading an MP4/MOV sample table) collect the same
:class:`PacketFacts` and turn them into a :class:`VideoProbe` with :func:`make_probe`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.core import codes
from pipelines.core.errors import RecordError
from pipelines.stages._decode_common import STAGE
from pipelines.stages.segment_audio import TRUNCATION_TOLERANCE_S


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


@dataclass
class PacketFacts:
    """Raw packet facts of one probe, in stream time-base units (the probe's input)."""

    v_pts: Sequence[int] | np.ndarray  # video packets' times (sizes below, same order)
    v_size: Sequence[int] | np.ndarray
    v_first: int  # earliest video presentation time
    v_end: int  # latest video presentation end
    keys: Sequence[int]  # keyframe presentation times
    a_pts: Sequence[int] | np.ndarray = ()
    a_size: Sequence[int] | np.ndarray = ()
    a_end: int | None = None


def make_probe(container: Any, vstream: Any, astream: Any, p: PacketFacts) -> VideoProbe:
    """The :class:`VideoProbe` of ``container`` from its packet facts ``p``.

    Raises RecordError ``media_empty`` (no video packets) or ``media_corrupt`` (no time base).
    """
    if not len(p.v_pts):
        raise RecordError(STAGE, codes.MEDIA_EMPTY, "the video stream holds no packets")
    has_audio = astream is not None and len(p.a_pts) > 0
    if not vstream.time_base or (has_audio and not astream.time_base):
        raise RecordError(STAGE, codes.MEDIA_CORRUPT, "a stream has no time base")
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
