"""Cut a video by stream copy: remux its packets into an in-memory mp4 per planned segment.

No decoding (hundreds of times real time). Segments start and end at keyframes; an audio packet
straddling a cut goes to neither side, so no segment decodes to more than ``END_SLACK_S`` past
its planned end.
"""

from __future__ import annotations

import bisect
import io
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

from pipelines.config.schema import SegmentationConfig
from pipelines.core import codes
from pipelines.core.errors import RecordError
from pipelines.stages.video.plan import END_SLACK_S, VideoCutPlan
from pipelines.stages.video.probe import audio_stream, main_video_stream
from pipelines.stages.video.probe_result import VideoProbe
from pipelines.stages.video.rows import SegmentRows

logger = logging.getLogger(__name__)


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


def copy_segments(
    asset: dict[str, Any], container: Any, probe: VideoProbe, plan: VideoCutPlan,
    seg: SegmentationConfig,
) -> Iterator[dict[str, Any] | RecordError]:  # fmt: skip
    """Remux packets into one mp4 per planned segment (segments start and end at keyframes).

    A video packet belongs to the segments whose ``[start, end)`` holds the time of the keyframe
    that opened its GOP (decode order), so GOPs are never split; an audio packet to those whose
    span holds its whole duration, up to ``END_SLACK_S`` past the end (a packet straddling a cut
    goes to neither side rather than lengthen a segment). Packets after the last segment's end
    (a dropped tail) go nowhere, and reading stops there.
    """
    import av

    rows = SegmentRows(asset, probe, plan)
    vstream = main_video_stream(container)
    astream = audio_stream(container)
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
            raise rows.failed(failing, codes.MEDIA_CORRUPT, f"remux failed: {exc}") from exc
        return
    if next_k <= last:  # the packets ended before these segments began
        raise rows.failed(next_k, codes.MEDIA_TRUNCATED, "the file ended before this segment")
    rows.check_truncation()
