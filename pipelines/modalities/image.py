"""Images: one segment per image, re-encoded to a format the model accepts when needed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelines.bedrock import tokens
from pipelines.modalities.base import (
    FingerprintFields,
    Modality,
    Usage,
    image_request,
    staged,
    valid,
)

if TYPE_CHECKING:
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.config.schema import EmbeddingConfig, SegmentationConfig

# ftyp major brands of still images (HEIF/AVIF).
IMAGE_BRANDS = frozenset((b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"))
_DIB_HEADER_SIZES = (12, 40, 52, 56, 64, 108, 124)


class Image(Modality):
    name = "image"
    decoder = "pipelines.stages.decode_image:decode_image"
    extensions = frozenset(("png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"))
    embedding_fields = ("image_detail_level",)
    segmentation_keys = frozenset(("mode", "image_max_side"))
    service_formats = frozenset(("png", "jpeg", "gif", "webp"))

    def sniff(self, head: bytes) -> int:
        if head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff"):
            return 2
        if head[:6] in (b"GIF87a", b"GIF89a") or head[:4] in (b"II*\x00", b"MM\x00*"):
            return 2
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return 2
        if head[4:8] == b"ftyp" and head[8:12] in IMAGE_BRANDS:
            return 2
        # BMP: a weak signature (the DIB header size), for content that is not text.
        if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _DIB_HEADER_SIZES:
            return 1
        return 0

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        return image_request(row, emb, emb.image_detail_level, purpose)

    def estimate_tokens(self, row: Mapping[str, Any]) -> int:
        return tokens.IMAGE_TOKENS

    def usage(self, row: Mapping[str, Any]) -> Usage:
        return Usage(images=1)

    def service_request(
        self, fmt: str, source_uri: str, emb: EmbeddingConfig, seg: SegmentationConfig
    ) -> EmbeddingRequest:
        from pipelines.bedrock.request import EmbeddingRequest

        request = EmbeddingRequest.for_image(
            None, fmt, emb.image_detail_level, **staged(emb, source_uri)
        )
        return valid(request.segmented())

    def service_fields(self, result: Any, emb: EmbeddingConfig) -> dict[str, Any]:
        return {"detail_level": emb.image_detail_level}

    def fingerprint_fields(self, seg: SegmentationConfig) -> FingerprintFields:
        return self.embedding_fields, ("mode", "image_max_side")
