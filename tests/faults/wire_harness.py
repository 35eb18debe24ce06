"""What every fault case of ``tests/faults/test_wire_*.py`` shares: a small corpus generated at
test time, the job run with short retries, and the checks every case makes (rows accounted for, no
partial asset, report written, exit code, no secret leaked).

Imported by the test modules (``from tests.faults.wire_harness import ...``). Their endpoints and
their Ray (whose workers start with :data:`SECRETS` in their environment) are fixtures of
``tests/faults/conftest.py``, started once for all of them.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from nova_devkit.emulator.launch import Endpoints
from pipelines.backfill import BackfillResult, run_backfill
from pipelines.config.compose import compose_backfill

# Credentials only this suite uses: a test greps every artefact of a run for them.
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAULTSUITE0000",
    "AWS_SECRET_ACCESS_KEY": f"fault-suite-secret-{uuid.uuid4().hex}",
    "AWS_SESSION_TOKEN": f"fault-suite-token-{uuid.uuid4().hex}",
    "QDRANT_API_KEY": f"fault-suite-qdrant-{uuid.uuid4().hex}",
}
SECRET_VALUES = [v for k, v in SECRETS.items() if k != "AWS_ACCESS_KEY_ID"]

# Short waits so that a storm of faults takes seconds, not minutes.
FAST_RETRIES = ("bedrock.base_backoff_s=0.01", "bedrock.max_backoff_s=0.05")

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


def text_of(seed: int, chars: int) -> str:
    out, i = [], seed
    while sum(len(w) + 1 for w in out) < chars:
        out.append(WORDS[i % len(WORDS)] + str(i % 7))
        i += 3
    return " ".join(out)


def text_manifest(root: Path, n: int = 6, chars: int = 500) -> Path:
    """``n`` inline text assets of two segments each (with ``segmentation.text_max_chars=300``)."""
    rows = [
        {"asset_id": f"note-{i}", "uri": None, "modality": "text", "text": text_of(i, chars)}
        for i in range(n)
    ]
    return write_manifest(root, rows)


def write_manifest(root: Path, rows: list[dict[str, Any]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def run_job(root: Path, eps: Endpoints, *more: str, s3_url: str | None = None) -> BackfillResult:
    """The real job, in this process, against the harness endpoints."""
    overrides = [o for o in eps.pipeline_overrides() if not o.startswith("bedrock.s3_endpoint")]
    cfg = compose_backfill(
        [
            "usecase=mixed_media",
            f"manifest={root / 'manifest.parquet'}",
            *overrides,
            f"bedrock.s3_endpoint_url={s3_url or eps.s3_url}",
            f"qdrant.path={root / 'qdrant'}",
            "qdrant.collection=faults",
            f"run_dir={root / 'runs'}",
            f"state.path={root / 'state'}",
            "segmentation.text_max_chars=300",
            "segmentation.text_overlap_chars=0",
            *FAST_RETRIES,
            *more,
        ]
    )
    return run_backfill(cfg)


def invoke_calls(eps: Endpoints) -> int:
    return sum(1 for r in eps.emulator.requests if r.operation == "InvokeModel")


def points_by_asset(root: Path, collection: str = "faults") -> dict[str, list[dict[str, Any]]]:
    """The collection read back: payloads by asset id."""
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(root / "qdrant"))
    try:
        if not client.collection_exists(collection):
            return {}
        out: dict[str, list[dict[str, Any]]] = {}
        offset = None
        while True:
            points, offset = client.scroll(collection, limit=256, offset=offset, with_payload=True)
            for p in points:
                payload = p.payload or {}
                out.setdefault(str(payload["asset_id"]), []).append(payload)
            if offset is None:
                return out
    finally:
        client.close()


OUTCOMES = (
    "embedded",
    "skipped_unchanged",
    "skipped_dead_letter",
    "skipped_modality",
    "dead_lettered",
    "pending",
)


def check_run(
    result: BackfillResult, root: Path, manifest_rows: int, exit_code: int
) -> dict[str, list[dict[str, Any]]]:
    """The checks every fault case makes; returns the collection read back.

    - every manifest row is accounted for: the report's outcomes add up to the manifest's rows;
    - no partial asset is visible: an asset with points has all its segments, and it is one the
      report calls embedded; a dead-lettered or pending asset has no point;
    - report.json and dead_letter.parquet are written;
    - the exit code is the documented one;
    - no secret of the run's environment is in the report, the dead letters or the payloads.
    """
    rep = result.report
    assert result.exit_code == exit_code, rep.get("abort_reason") or rep.get("failure")
    assert result.report_path.exists() and result.dead_letter_path.exists()
    on_disk = json.loads(result.report_path.read_text())
    assert on_disk["status"] == rep["status"]
    assert on_disk["rows"] == manifest_rows
    assert sum(on_disk[k] for k in OUTCOMES) == manifest_rows, {k: on_disk[k] for k in OUTCOMES}
    dead = pq.read_table(result.dead_letter_path).to_pylist()
    dead_assets = {d["asset_id"] for d in dead}
    held = points_by_asset(root)
    for asset_id, payloads in held.items():
        counts = {p["segment_count"] for p in payloads}
        assert len(counts) == 1, (asset_id, counts)
        assert len({p["segment_index"] for p in payloads}) == counts.pop(), asset_id
        assert asset_id not in dead_assets, f"{asset_id} is dead-lettered but has points"
    assert len(held) == rep["embedded"] + rep["skipped_unchanged"]
    blob = result.report_path.read_bytes() + result.dead_letter_path.read_bytes()
    blob += json.dumps(held, default=str).encode()
    for secret in SECRET_VALUES:
        assert secret.encode() not in blob, "a secret reached the run's artefacts"
    return held


def dead_codes(result: BackfillResult) -> dict[str, int]:
    """Dead-letter rows by error code."""
    out: dict[str, int] = {}
    for d in pq.read_table(result.dead_letter_path).to_pylist():
        out[d["error_code"]] = out.get(d["error_code"], 0) + 1
    return out
