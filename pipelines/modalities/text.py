"""Text: inline ``text`` or a text file, cut into overlapping character chunks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pipelines.modalities.base import FingerprintFields, Modality, is_text, text_request

if TYPE_CHECKING:
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
    from pipelines.core.errors import RecordError


class Text(Modality):
    name = "text"
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
    service_segmentation = True

    def sniff(self, head: bytes) -> int:
        # Lowest priority: any format with a signature wins over "it decodes as text".
        return 1 if is_text(head) else 0

    def decode(
        self,
        asset: Mapping[str, Any],
        seg: SegmentationConfig,
        emb: EmbeddingConfig,
        s3_endpoint_url: str | None,
    ) -> Iterator[dict[str, Any] | RecordError]:
        from pipelines.stages.chunk_text import decode_text

        return decode_text(asset, seg, emb, s3_endpoint_url)

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        return text_request(row, emb, purpose)

    def fingerprint_fields(self, seg: SegmentationConfig) -> FingerprintFields:
        if seg.mode == "service":
            return self.embedding_fields, ("mode", "service_max_chars")
        return self.embedding_fields, ("mode", "text_max_chars", "text_overlap_chars")
