"""Audio: fixed windows (at most 30 s, optional overlap) encoded as mp3, wav or ogg."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelines.modalities.base import (
    FingerprintFields,
    TimedMedia,
    audio_request,
    staged,
    valid,
)

if TYPE_CHECKING:
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.config.schema import EmbeddingConfig, PricesConfig, SegmentationConfig

# ftyp major brands of audio-only MPEG-4 files.
AUDIO_BRANDS = frozenset((b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "))


class Audio(TimedMedia):
    name = "audio"
    decoder = "pipelines.stages.segment_audio:segment_audio"
    extensions = frozenset(
        ("mp3", "wav", "ogg", "oga", "opus", "flac", "m4a", "aac", "mka", "weba")
    )
    work_per_byte = 2.0
    segmentation_keys = frozenset(
        ("mode", "audio_window_s", "audio_overlap_s", "audio_format", "service_duration_s")
    )
    service_formats = frozenset(("mp3", "wav", "ogg"))

    def sniff(self, head: bytes) -> int:
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return 2
        if head[4:8] == b"ftyp" and head[8:12] in AUDIO_BRANDS:
            return 2
        if head.startswith(b"fLaC") or head.startswith(b"ID3"):
            return 2
        if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
            return 2  # MPEG audio frame sync (MP3)
        if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
            return 2  # ADTS AAC
        if head.startswith(b"OggS"):
            return 0 if b"theora" in head else 2
        if head[4:8] == b"ftyp" or head.startswith(b"\x1a\x45\xdf\xa3"):
            return 1  # MP4 / Matroska: may hold audio only
        return 0

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        return audio_request(row, emb, purpose)

    def price_per_second(self, prices: PricesConfig) -> float:
        return prices.audio_per_second

    def service_request(
        self, fmt: str, source_uri: str, emb: EmbeddingConfig, seg: SegmentationConfig
    ) -> EmbeddingRequest:
        from pipelines.bedrock.request import EmbeddingRequest

        request = EmbeddingRequest.for_audio(None, fmt, **staged(emb, source_uri))
        return valid(request.segmented(duration_seconds=seg.service_duration_s))

    def fingerprint_fields(self, seg: SegmentationConfig) -> FingerprintFields:
        if seg.mode == "service":
            return self.embedding_fields, ("mode", "service_duration_s")
        return self.embedding_fields, ("mode", "audio_window_s", "audio_overlap_s", "audio_format")
