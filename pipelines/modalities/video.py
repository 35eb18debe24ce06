"""Video: segments of at most 30 s, cut at keyframes by stream copy or re-encoded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelines.modalities.base import (
    FingerprintFields,
    TimedMedia,
    staged,
    valid,
    video_request,
)

if TYPE_CHECKING:
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.config.schema import EmbeddingConfig, PricesConfig, SegmentationConfig

_CUTTING = ("video_window_s", "video_overlap_s", "video_reencode", "video_max_height")


class Video(TimedMedia):
    name = "video"
    decoder = "pipelines.stages.segment_video:segment_video"
    extensions = frozenset(
        ("mp4", "m4v", "mov", "mkv", "webm", "flv", "mpeg", "mpg", "wmv", "3gp", "avi")
    )
    embedding_fields = ("video_embedding_mode",)
    segmentation_keys = frozenset(("mode", "service_duration_s", *_CUTTING))
    service_formats = frozenset(("mp4", "mov", "mkv", "webm", "flv", "mpeg", "mpg", "wmv", "3gp"))

    def sniff(self, head: bytes) -> int:
        if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            return 2
        if head.startswith(b"OggS") and b"theora" in head:
            return 2
        if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
            return 2  # MPEG program stream
        if head.startswith(b"FLV\x01"):
            return 2
        if head[4:8] == b"ftyp" or head.startswith(b"\x1a\x45\xdf\xa3"):
            return 1  # MP4 / Matroska: video unless the extension says audio
        if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
            return 1  # MPEG-TS sync byte every 188 bytes (weak)
        return 0

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        return video_request(row, emb, purpose)

    def price_per_second(self, prices: PricesConfig) -> float:
        return prices.video_per_second

    def service_request(
        self, fmt: str, source_uri: str, emb: EmbeddingConfig, seg: SegmentationConfig
    ) -> EmbeddingRequest:
        from pipelines.bedrock.request import EmbeddingRequest

        request = EmbeddingRequest.for_video(
            None, fmt, emb.video_embedding_mode, **staged(emb, source_uri)
        )
        return valid(request.segmented(duration_seconds=seg.service_duration_s))

    def fingerprint_fields(self, seg: SegmentationConfig) -> FingerprintFields:
        if seg.mode == "service":
            return self.embedding_fields, ("mode", "service_duration_s")
        return self.embedding_fields, ("mode", *_CUTTING)
