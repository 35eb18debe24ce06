"""The output of one video asset: segment rows, and the errors of segments that failed, with a
fixed segment count."""

from __future__ import annotations

from typing import Any

from pipelines.core import codes
from pipelines.core.errors import RecordError
from pipelines.core.rows import segment_row
from pipelines.stages._decode_common import STAGE
from pipelines.stages.video.plan import MAX_SEGMENT_BYTES, VideoCutPlan
from pipelines.stages.video.probe_result import VideoProbe


class SegmentRows:
    """Builds the rows of one asset with a fixed ``segment_count``."""

    def __init__(self, asset: dict[str, Any], probe: VideoProbe, plan: VideoCutPlan) -> None:
        self.asset = asset
        self.probe = probe
        self.segments = plan.segments
        self.count = len(plan.segments) + (1 if probe.truncated else 0)

    def segment(self, k: int, data: bytes) -> dict[str, Any] | RecordError:
        """Segment ``k``'s row, or its error when it is too large (the others go on)."""
        start, end = self.segments[k]
        if len(data) > MAX_SEGMENT_BYTES:
            return self.failed(
                k, codes.SEGMENT_TOO_LARGE, f"{len(data)} bytes > {MAX_SEGMENT_BYTES}"
            )
        return segment_row(
            self.asset, segment_index=k, segment_count=self.count, input_kind="video",
            input_format="mp4", input_bytes=data, start_s=start, end_s=end,
        )  # fmt: skip

    def failed(self, k: int, code: str, message: str) -> RecordError:
        """The error of segment ``k``."""
        start, end = self.segments[k]
        return RecordError(
            STAGE, code, message, segment_index=k, segment_count=self.count,
            start_s=start, end_s=end,
        )  # fmt: skip

    def check_truncation(self) -> None:
        """Raise the error accounting for the part of a truncated file that is missing."""
        if self.probe.truncated:
            raise RecordError(
                STAGE, codes.MEDIA_TRUNCATED,
                f"the file holds {self.probe.duration_s:.2f} s of video; its header says "
                f"{self.probe.declared_s} s", segment_index=len(self.segments),
                segment_count=self.count, start_s=self.probe.duration_s,
                end_s=self.probe.declared_s,
            )  # fmt: skip
