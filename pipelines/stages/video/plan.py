"""Plan how a probed video is cut: stream copy or re-encode, and the exact segment bounds.

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

Windows and tails follow :mod:`pipelines.stages.segment_audio`: a last piece adding less than
0.5 s is merged into the previous segment when that stays within 30 s, else dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pipelines.config.schema import SegmentationConfig
from pipelines.core import codes
from pipelines.core.errors import RecordError
from pipelines.stages._decode_common import STAGE
from pipelines.stages.segment_audio import (
    MAX_WINDOW_S,
    MIN_TAIL_S,
    open_media,
    plan_windows,
    window_params,
)
from pipelines.stages.video.probe import probe_video
from pipelines.stages.video.probe_result import VideoProbe

REENCODE_MODES = ("auto", "always", "never")
# Codecs that go into an mp4 for Nova without re-encoding.
COPY_VIDEO_CODECS = frozenset({"h264", "hevc"})
COPY_AUDIO_CODECS = frozenset({"aac", "mp3"})
# Raw bytes per segment: 25 MB request body after base64 (x4/3) leaves 18.75 MB; keep headroom.
MAX_SEGMENT_BYTES = 15_000_000
# A segment may decode to at most this much more than its planned span (audio packets or AAC
# frames reaching past the cut); well under the 50 ms between MAX_WINDOW_S and the API's 30 s.
END_SLACK_S = 0.025

Method = Literal["copy", "reencode"]


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

    Raises RecordError ``reencode_required`` when ``reencode == "never"`` and copying is
    impossible, ``media_empty`` for a zero-length video. See the module docstring for the rule.
    """
    if probe.duration_s <= 0:
        raise RecordError(STAGE, codes.MEDIA_EMPTY, "the video has no duration")
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
        raise RecordError(STAGE, codes.REENCODE_REQUIRED, f"video_reencode=never but {why_not}")
    return VideoCutPlan("reencode", tuple(fixed), "re-encode: " + why_not)


def plan_video(path: str, seg: SegmentationConfig) -> tuple[VideoProbe, VideoCutPlan]:
    """Probe the video at a local ``path`` and plan its cuts as the stage would, without cutting."""
    window, hop = window_params(seg.video_window_s, seg.video_overlap_s)
    with open_media(path) as container:
        probe = probe_video(container)
    return probe, plan_video_cuts(probe, window, hop, seg.video_reencode, seg.video_max_height)
