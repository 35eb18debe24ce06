"""Text: inline ``text`` or a text file, cut into overlapping character chunks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelines.modalities.base import (
    FingerprintFields,
    Modality,
    is_text,
    staged,
    text_request,
    valid,
)

if TYPE_CHECKING:
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.config.schema import EmbeddingConfig, SegmentationConfig


class Text(Modality):
    name = "text"
    decoder = "pipelines.stages.chunk_text:decode_text"
    inline_in_process = True
    extensions = frozenset(
        (
            "txt",
            "text",
            "md",
            "markdown",
            "rst",
            "csv",
            "tsv",
            "json",
            "jsonl",
            "log",
            "html",
            "htm",
            "xml",
        )
    )
    position_fields = ("char_start", "char_end")
    embedding_fields = ("text_truncation_mode",)
    segmentation_keys = frozenset(
        ("mode", "text_max_chars", "text_overlap_chars", "service_max_chars")
    )

    def sniff(self, head: bytes) -> int:
        # Lowest priority: any format with a signature wins over "it decodes as text".
        return 1 if is_text(head) else 0

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        return text_request(row, emb, purpose)

    def accepts_service_format(self, fmt: str) -> bool:
        return True  # any text file; inline text is staged as .txt

    def service_request(
        self, fmt: str, source_uri: str, emb: EmbeddingConfig, seg: SegmentationConfig
    ) -> EmbeddingRequest:
        from pipelines.bedrock.request import EmbeddingRequest

        request = EmbeddingRequest.for_text(
            truncation_mode=emb.text_truncation_mode, **staged(emb, source_uri)
        )
        return valid(request.segmented(max_length_chars=seg.service_max_chars))

    def service_fields(self, result: Any, emb: EmbeddingConfig) -> dict[str, Any]:
        return {"char_start": result.start_char, "char_end": result.end_char}

    def fingerprint_fields(self, seg: SegmentationConfig) -> FingerprintFields:
        if seg.mode == "service":
            return self.embedding_fields, ("mode", "service_max_chars")
        return self.embedding_fields, ("mode", "text_max_chars", "text_overlap_chars")
