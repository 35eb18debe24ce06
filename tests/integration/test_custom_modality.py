"""A modality defined here, registered at run time, backfilled end to end with no change under
``pipelines/``: a toy "sensor CSV" whose files become one text segment per group of rows."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray import cloudpickle

from nova_devkit.emulator.launch import Endpoints
from pipelines.backfill import run_backfill
from pipelines.bedrock.request import EmbeddingRequest
from pipelines.config.compose import compose_backfill
from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core.errors import RecordError
from pipelines.core.rows import segment_row
from pipelines.modalities import Modality, register
from pipelines.modalities.base import FingerprintFields, text_request

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

ROWS_PER_SEGMENT = 4


class SensorCsv(Modality):
    """``time,value`` lines; every ``ROWS_PER_SEGMENT`` readings become one text segment."""

    name = "sensor_csv"
    extensions = frozenset(("sensor",))
    position_fields = ("char_start", "char_end")
    embedding_fields = ("text_truncation_mode",)

    def sniff(self, head: bytes) -> int:
        return 2 if head.startswith(b"time,value\n") else 0

    def decode(
        self,
        asset: Mapping[str, Any],
        seg: SegmentationConfig,
        emb: EmbeddingConfig,
        s3_endpoint_url: str | None,
    ) -> Iterator[dict[str, Any] | RecordError]:
        lines = Path(str(asset["uri"])).read_text().splitlines()
        if not lines or lines[0] != "time,value":
            raise RecordError("decode", "sensor_header_missing", "no time,value header")
        readings = lines[1:]
        groups = [
            readings[i : i + ROWS_PER_SEGMENT] for i in range(0, len(readings), ROWS_PER_SEGMENT)
        ]
        for k, group in enumerate(groups):
            text = "sensor readings " + "; ".join(group)
            yield segment_row(
                asset,
                segment_index=k,
                segment_count=len(groups),
                input_kind="text",
                input_text=text,
                char_start=k * ROWS_PER_SEGMENT,
                char_end=k * ROWS_PER_SEGMENT + len(group),
            )

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        return text_request(row, emb, purpose)

    def fingerprint_fields(self, seg: SegmentationConfig) -> FingerprintFields:
        return self.embedding_fields, ("mode",)


@pytest.fixture(scope="module", autouse=True)
def sensor_modality() -> None:
    # The Ray workers cannot import this test module: ship the class by value with the stages.
    cloudpickle.register_pickle_by_value(sys.modules[SensorCsv.__module__])
    register(SensorCsv())


def test_a_modality_registered_by_a_test_is_backfilled_end_to_end(
    emulator: Endpoints, tmp_path: Path
) -> None:
    sensors = {}
    for i, n in enumerate((10, 4, 7)):
        path = tmp_path / f"probe-{i}.sensor"
        path.write_text("time,value\n" + "\n".join(f"{t},{20 + i + t / 10}" for t in range(n)))
        sensors[f"probe-{i}"] = path
    bad = tmp_path / "probe-bad.sensor"
    bad.write_text("no header here\n1,2\n")
    rows = [
        {"asset_id": a, "uri": str(p), "modality": None, "content_version": "v1"}
        for a, p in {**sensors, "probe-bad": bad}.items()
    ]
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)  # modality inferred from ".sensor"

    cfg = compose_backfill(
        [
            f"manifest={manifest}",
            "usecase.modalities=[sensor_csv]",
            *emulator.pipeline_overrides(),
            f"qdrant.path={tmp_path / 'qdrant'}",
            "qdrant.collection=sensors",
            f"run_dir={tmp_path / 'runs'}",
            f"state.path={tmp_path / 'state'}",
        ]
    )
    result = run_backfill(cfg)
    rep = result.report

    segments = {"probe-0": 3, "probe-1": 1, "probe-2": 2}
    assert rep["embedded"] == 3 and rep["dead_lettered"] == 1
    assert rep["by_modality"]["sensor_csv"]["points_written"] == sum(segments.values())
    dead = pq.read_table(result.dead_letter_path).to_pylist()
    assert [(d["asset_id"], d["error_code"]) for d in dead] == [
        ("probe-bad", "sensor_header_missing")
    ]
    # What crossed the wire: one text request per segment, with the readings.
    sent = [r for r in emulator.emulator.requests if r.operation == "InvokeModel"]
    assert len(sent) == sum(segments.values()) + rep["preflight_calls"] == rep["bedrock_calls"]
    texts = [r.body["singleEmbeddingParams"]["text"]["value"] for r in sent]
    assert texts[0] == "."  # the preflight call, before any decoding
    assert all(t.startswith("sensor readings ") for t in texts[1:])
    # The collection holds them with the modality's position fields and fingerprint.
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        points, _ = client.scroll("sensors", limit=100, with_payload=True)
    finally:
        client.close()
    payloads = [p.payload or {} for p in points]
    assert {p["asset_id"] for p in payloads} == set(segments)
    assert all(p["modality"] == "sensor_csv" and "char_end" in p for p in payloads)
    assert all("modality=sensor_csv" in p["fingerprint"] for p in payloads)
    assert rep["cost_usd"] > 0  # the default cost rule prices its text
    json.dumps(rep)  # the report stays serialisable
