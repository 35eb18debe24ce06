"""A modality whose decoder misbehaves on request, for the decoder isolation tests: a ``.hostile``
file holding ``abort`` kills its process (``os.abort()``, as a crash in native code would),
``hog`` allocates without bound, ``sleep`` hangs; anything else becomes one text segment.
Registered by the test (and shipped to Ray workers by value)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipelines.bedrock.request import EmbeddingRequest
from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core.errors import RecordError
from pipelines.core.rows import segment_row
from pipelines.modalities import Modality
from pipelines.modalities.base import FingerprintFields, text_request


class Hostile(Modality):
    name = "hostile"
    extensions = frozenset(("hostile",))
    position_fields = ("char_start", "char_end")

    def decode(
        self,
        asset: Mapping[str, Any],
        seg: SegmentationConfig,
        emb: EmbeddingConfig,
        s3_endpoint_url: str | None,
    ) -> Iterator[dict[str, Any] | RecordError]:
        text = Path(str(asset["uri"])).read_text().strip()
        if text == "abort":
            os.abort()
        if text == "hog":
            hoard = []
            while True:
                hoard.append(bytearray(32 * 1024 * 1024))
        if text == "sleep":
            time.sleep(3600)
        yield segment_row(
            asset,
            segment_index=0,
            segment_count=1,
            input_kind="text",
            input_text=text,
            char_start=0,
            char_end=len(text),
        )

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        return text_request(row, emb, purpose)

    def fingerprint_fields(self, seg: SegmentationConfig) -> FingerprintFields:
        return ("text_truncation_mode",), ("mode",)
