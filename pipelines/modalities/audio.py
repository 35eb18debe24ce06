"""Audio: fixed windows (at most 30 s, optional overlap) encoded as mp3, wav or ogg.

Recognised by signature (WAV, AIFF, FLAC, MP3, ADTS AAC, Ogg, M4A brands, CAF, AU, AMR, APE,
WavPack, DSD, TTA, Musepack, AC-3) and, in containers that hold audio or video (MP4/QuickTime,
Matroska/WebM, FLV, ASF, MPEG-TS), for a local file by its streams: audio when it holds audio
and no video (:meth:`Audio.identify`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelines.modalities.base import (
    FingerprintFields,
    TimedMedia,
    audio_request,
    split_parts,
    staged,
    valid,
)
from pipelines.modalities.probing import media_streams

if TYPE_CHECKING:
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.config.schema import EmbeddingConfig, PricesConfig, SegmentationConfig

# ftyp major brands of audio-only MPEG-4 files.
AUDIO_BRANDS = frozenset((b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "))
# Signatures at offset 0 of audio-only formats.
_MAGIC = (
    b"fLaC",
    b"ID3",
    b"caff",  # Core Audio
    b".snd",  # Sun/NeXT AU
    b"#!AMR",
    b"MAC ",  # Monkey's Audio
    b"wvpk",  # WavPack
    b"DSD ",  # DSF
    b"TTA1",
    b"MPCK",  # Musepack SV8
    b"MP+",  # Musepack SV7
    b"tBaK",  # TAK
)
# Containers that may hold audio only or video (MP4, Matroska, FLV, ASF/WMA-WMV).
_ASF = b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\x00\xaa\x00\x62\xce\x6c"


def av_container(head: bytes) -> bool:
    """A container that may hold audio, video or both: the streams decide."""
    return (
        head[4:8] == b"ftyp"
        or head.startswith((b"\x1a\x45\xdf\xa3", b"FLV\x01", _ASF))
        or (len(head) > 376 and head[0] == head[188] == head[376] == 0x47)  # MPEG-TS
    )


class Audio(TimedMedia):
    name = "audio"
    decoder = "pipelines.stages.segment_audio:segment_audio"
    extensions = frozenset(
        (
            *("mp3", "wav", "ogg", "oga", "opus", "flac", "m4a", "m4b", "aac", "mka", "weba"),
            *("aif", "aiff", "aifc", "caf", "au", "snd", "amr", "ape", "wv", "dsf", "dff"),
            *("tta", "mpc", "tak", "wma", "ac3", "eac3", "mp2", "spx", "3ga"),
        )
    )
    work_per_byte = 2.0
    segmentation_keys = frozenset(
        ("mode", "audio_window_s", "audio_overlap_s", "audio_format", "service_duration_s")
    )
    service_formats = frozenset(("mp3", "wav", "ogg"))

    def split(
        self, row: Mapping[str, Any], seg: SegmentationConfig, work: float, max_work: float
    ) -> int:
        """Time ranges (runs of windows): each part probes the file, seeks to a second before
        its first window and decodes its own windows (``segment_audio``)."""
        return split_parts(work, max_work)

    def sniff(self, head: bytes) -> int:
        if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
            return 2
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return 2
        if head[:4] == b"FRM8" and head[12:16] == b"DSD ":
            return 2  # DSDIFF
        if head[4:8] == b"ftyp" and head[8:12] in AUDIO_BRANDS:
            return 2
        if head.startswith(_MAGIC):
            return 2
        if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
            return 2  # MPEG audio frame sync (MP3)
        if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
            return 2  # ADTS AAC
        if head.startswith(b"OggS"):
            return 0 if b"theora" in head else 2
        if av_container(head):
            return 1  # may hold audio only
        if head[:2] == b"\x0b\x77":
            return 1  # AC-3 sync word (weak)
        return 0

    def identify(self, path: str, head: bytes) -> int | None:
        """2 for a container that holds audio and no video (cover art is not video), 1 when it
        holds video too, 0 when it holds no audio; None when FFmpeg cannot open it."""
        if self.sniff(head) == 0 and not self.hinted(path):
            return 0  # FFmpeg opens many things: probe only what looks or is named like media
        streams = media_streams(path)
        if streams is None or streams.still or not (streams.audio or streams.video):
            return None
        if not streams.audio:
            return 0
        return 1 if streams.video else 2

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
