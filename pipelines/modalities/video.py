"""Video: segments of at most 30 s, cut at keyframes by stream copy or re-encoded.

Recognised by signature (AVI, Ogg Theora, MPEG program streams) and, in containers that hold
audio or video (MP4/QuickTime, Matroska/WebM, FLV, ASF, MPEG-TS), for a local file by its
streams: video when it holds a video stream that is not cover art (:meth:`Video.identify`).

A file of this modality that holds audio and no video (an audio-only WebM or MP4, or a manifest
row that says ``video`` for a song) is cut as audio: its segment rows have ``input_kind="audio"``
and are sent as audio input, priced as audio and counted in the report's ``notes``
(``audio_only_video``); a use case that takes no audio dead-letters it with that code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelines.modalities.audio import av_container
from pipelines.modalities.base import (
    FingerprintFields,
    Modality,
    TimedMedia,
    Usage,
    audio_request,
    segment_seconds,
    split_parts,
    staged,
    valid,
    video_request,
)
from pipelines.modalities.probing import media_streams

if TYPE_CHECKING:
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.config.schema import EmbeddingConfig, PricesConfig, SegmentationConfig

_CUTTING = ("video_window_s", "video_overlap_s", "video_reencode", "video_max_height")
# The note (and the dead-letter code when the use case takes no audio) of a video file that
# holds only audio.
AUDIO_ONLY = "audio_only_video"


def _is_audio(row: Mapping[str, Any]) -> bool:
    return row.get("input_kind") == "audio"


class Video(TimedMedia):
    name = "video"
    decoder = "pipelines.stages.segment_video:segment_video"
    extensions = frozenset(
        (
            *("mp4", "m4v", "mov", "mkv", "webm", "flv", "f4v", "mpeg", "mpg", "wmv", "asf"),
            *("3gp", "3g2", "avi", "ts", "mts", "m2ts", "ogv", "vob", "mxf"),
        )
    )
    embedding_fields = ("video_embedding_mode",)
    segmentation_keys = frozenset(("mode", "service_duration_s", *_CUTTING))
    service_formats = frozenset(("mp4", "mov", "mkv", "webm", "flv", "mpeg", "mpg", "wmv", "3gp"))

    def split(
        self, row: Mapping[str, Any], seg: SegmentationConfig, work: float, max_work: float
    ) -> int:
        """Time ranges: a re-encoded video's parts each seek near their first segment and encode
        their own; a stream-copied one (cheap) is cut whole by its first part, and an audio-only
        file by runs of audio windows (``segment_video``)."""
        return split_parts(work, max_work)

    def sniff(self, head: bytes) -> int:
        if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            return 2
        if head.startswith(b"OggS") and b"theora" in head:
            return 2
        if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
            return 2  # MPEG program stream
        if av_container(head):
            return 1  # MP4, Matroska, FLV, ASF, MPEG-TS: video unless the streams say audio
        return 0

    def identify(self, path: str, head: bytes) -> int | None:
        """2 for a container with a video stream (not cover art, not a still image's demuxer),
        0 for one without; None when FFmpeg cannot open it."""
        if self.sniff(head) == 0 and not self.hinted(path):
            return 0  # FFmpeg opens many things: probe only what looks or is named like media
        streams = media_streams(path)
        if streams is None or not (streams.audio or streams.video):
            return None
        return 0 if streams.still or not streams.video else 2

    def embedded_as(self, row: Mapping[str, Any]) -> tuple[str, str] | None:
        return ("audio", AUDIO_ONLY) if _is_audio(row) else None

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        if _is_audio(row):
            return audio_request(row, emb, purpose)
        return video_request(row, emb, purpose)

    def usage(self, row: Mapping[str, Any]) -> Usage:
        if _is_audio(row):
            return Usage(audio_seconds=segment_seconds(row) or 0.0, notes={AUDIO_ONLY: 1})
        return super().usage(row)

    def price_per_second(self, prices: PricesConfig) -> float:
        return prices.video_per_second

    def service_modality(self, path: str | None) -> Modality:
        """An audio-only container goes to the service as audio (or is refused as a format the
        service takes no audio in), never as a video without a picture."""
        if path is None:
            return self
        streams = media_streams(path)
        if streams is not None and streams.audio and not streams.video:
            from pipelines.modalities.audio import Audio

            return Audio()
        return self

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
