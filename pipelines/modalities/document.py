"""Documents (PDF): pages rendered as images, or their text layer chunked, per ``pdf_mode``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelines.bedrock import tokens
from pipelines.modalities.base import (
    FingerprintFields,
    Modality,
    Usage,
    image_request,
    text_request,
)

if TYPE_CHECKING:
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.config.schema import EmbeddingConfig, SegmentationConfig

_TEXT_CHUNKING = ("text_max_chars", "text_overlap_chars")


def _is_page_text(row: Mapping[str, Any]) -> bool:
    # A page is sent as text (pdf_mode text/auto) or as an image of the page.
    return row.get("input_bytes") is None and row.get("input_text") is not None


class Document(Modality):
    name = "document"
    decoder = "pipelines.stages.decode_pdf:decode_pdf"
    extensions = frozenset(("pdf",))
    # Pages are rendered: a byte of PDF is far more decoding than a byte of JPEG.
    work_per_byte = 16.0
    position_fields = ("page", "char_start", "char_end")
    embedding_fields = ("document_detail_level",)
    segmentation_keys = frozenset(
        ("mode", "pdf_mode", "pdf_dpi", "pdf_max_pixels", *_TEXT_CHUNKING)
    )

    def sniff(self, head: bytes) -> int:
        return 2 if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"%PDF-") else 0

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        if _is_page_text(row):
            return text_request(row, emb, purpose)
        return image_request(row, emb, emb.document_detail_level, purpose)

    def estimate_tokens(self, row: Mapping[str, Any]) -> int:
        if _is_page_text(row):
            return tokens.text_tokens(len(row.get("input_text") or ""))
        return tokens.IMAGE_TOKENS

    def usage(self, row: Mapping[str, Any]) -> Usage:
        if _is_page_text(row):
            return Usage(text_chars=len(row.get("input_text") or ""))
        return Usage(images=1)

    def fingerprint_fields(self, seg: SegmentationConfig) -> FingerprintFields:
        if seg.pdf_mode == "image":
            return self.embedding_fields, ("mode", "pdf_mode", "pdf_dpi", "pdf_max_pixels")
        # Pages may go as text: truncation and chunking change the vectors too.
        return (
            (*self.embedding_fields, "text_truncation_mode"),
            ("mode", "pdf_mode", "pdf_dpi", "pdf_max_pixels", *_TEXT_CHUNKING),
        )
