"""The output rows of one video asset: segment rows and dead letters with a fixed segment count."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipelines.core.rows import dead_letter_row, segment_row
from pipelines.stages.video.plan import MAX_SEGMENT_BYTES, VideoCutPlan
from pipelines.stages.video.probe_result import VideoProbe

STAGE = "decode"


class SegmentRows:
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
