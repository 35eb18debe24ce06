"""A modality whose decoder takes its time (0.5 s a segment: two decode tasks make segments a
little slower than the test's quota lets the calls go), so decode tasks stay busy while the calls
go on and a test can kill one in the middle of a run. Registered by the job's own process (see
test_kill_resume.py).

``SLOW_TEXT_SECONDS_PER_SEGMENT`` in the job's environment sets another pace: the reference run
that is never killed (``uninterrupted`` in tests/integration/conftest.py) decodes at once. The pace
is in no vector, payload or fingerprint: its collection is the one a paced run makes."""

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

SECONDS_PER_SEGMENT = float(os.environ.get("SLOW_TEXT_SECONDS_PER_SEGMENT", "0.5"))


class SlowText(Modality):
    """One text segment per line of a ``.slow`` file, decoded slowly."""

    name = "slow_text"
    extensions = frozenset(("slow",))
    position_fields = ("char_start", "char_end")

    def decode(
        self,
        asset: Mapping[str, Any],
        seg: SegmentationConfig,
        emb: EmbeddingConfig,
        s3_endpoint_url: str | None,
    ) -> Iterator[dict[str, Any] | RecordError]:
        lines = Path(str(asset["uri"])).read_text().splitlines()
        for k, line in enumerate(lines):
            time.sleep(SECONDS_PER_SEGMENT)
            yield segment_row(
                asset, segment_index=k, segment_count=len(lines), input_kind="text", input_text=line
            )

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        return text_request(row, emb, purpose)

    def fingerprint_fields(self, seg: SegmentationConfig) -> FingerprintFields:
        return ("text_truncation_mode",), ("mode",)
