"""Secrets: never sent in clear to another host, never written where a run leaves things.

The refusals are configuration errors (exit 2, the key named, the secret not repeated). The leak
test runs the real job (``python -m jobs.backfill``) with recognisable fake credentials and a
fake Qdrant API key through a run with dead letters, retried faults and an aborted run, then
searches every place the job writes: stdout, stderr, the run folders, the journal and the
collection's files and payloads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from nova_devkit.media import make_product_photo
from pipelines.config.compose import compose_backfill
from pipelines.config.validate import validate_backfill
from pipelines.core.errors import ConfigError

pytestmark = [pytest.mark.integration]

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKESECRETTEST42",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-access-key-7c1e0b9a55d4",
    "AWS_SESSION_TOKEN": "fake-session-token-1f2e3d4c5b6a",
    "QDRANT_API_KEY": "fake-qdrant-api-key-9a8b7c6d5e4f",
}


def _env(tmp_path: Path) -> dict[str, str]:
    empty = tmp_path / "empty-aws-file"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_"))}
    env.update(
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_EC2_METADATA_DISABLED="true",
        RAY_USAGE_STATS_ENABLED="0",
        **SECRETS,
    )
    return env


def _job(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs.backfill", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _leaks(blob: bytes) -> list[str]:
    return [name for name, value in SECRETS.items() if value.encode() in blob]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["qdrant=server", "qdrant.url=http://10.20.30.40:6333"], "qdrant.url"),
        (["bedrock.endpoint_url=http://bedrock.example.com"], "bedrock.endpoint_url"),
        (["bedrock.s3_endpoint_url=http://s3.example.com:9000"], "bedrock.s3_endpoint_url"),
    ],
)
def test_secrets_in_clear_to_another_host_fail_before_work_naming_the_key(
    tmp_path: Path, overrides: list[str], key: str
) -> None:
    proc = _job(tmp_path, "manifest=m.parquet", f"run_dir={tmp_path / 'runs'}", *overrides)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"error: {key}:" in proc.stderr
    assert "allow_insecure" in proc.stderr  # says how to accept it knowingly
    assert not (tmp_path / "runs").exists()
    assert _leaks((proc.stdout + proc.stderr).encode()) == []


def test_the_manifest_job_refuses_s3_in_clear_to_another_host(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.manifest",
            "source=s3://corpus/data",
            "s3_endpoint_url=http://s3.example.com:9000",
            f"out={tmp_path / 'm.parquet'}",
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error: s3_endpoint_url: http://s3.example.com:9000 is http://" in proc.stderr
    assert "allow_insecure_endpoint=true" in proc.stderr
    assert _leaks((proc.stdout + proc.stderr).encode()) == []


@pytest.mark.parametrize(
    "overrides",
    [
        ["qdrant=server", "qdrant.url=https://qdrant.example.com:6333"],
        ["qdrant=server", "qdrant.url=http://127.0.0.1:6333"],
        [
            "qdrant=server",
            "qdrant.url=http://10.20.30.40:6333",
            "qdrant.allow_insecure_api_key=true",
        ],
        ["bedrock.endpoint_url=https://bedrock.example.com"],
        ["bedrock.endpoint_url=http://localhost:8765"],
        ["bedrock.endpoint_url=http://10.1.1.1:80", "bedrock.allow_insecure_endpoint=true"],
    ],
)
def test_tls_loopback_or_an_explicit_key_is_accepted(
    overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QDRANT_API_KEY", SECRETS["QDRANT_API_KEY"])
    validate_backfill(compose_backfill(["manifest=m.parquet", *overrides]))


def test_qdrant_over_http_without_an_api_key_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    validate_backfill(
        compose_backfill(["manifest=m.parquet", "qdrant=server", "qdrant.url=http://q:6333"])
    )
    monkeypatch.setenv("QDRANT_API_KEY", SECRETS["QDRANT_API_KEY"])
    with pytest.raises(ConfigError) as err:
        validate_backfill(
            compose_backfill(["manifest=m.parquet", "qdrant=server", "qdrant.url=http://q:6333"])
        )
    assert err.value.key == "qdrant.url" and SECRETS["QDRANT_API_KEY"] not in str(err.value)


@pytest.mark.slow
def test_no_secret_in_logs_reports_payloads_or_exceptions(
    emulator: Endpoints, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = []
    for i in range(3):
        photo = make_product_photo(corpus / f"photo-{i}.jpg", seed=i, size=(96, 64))
        rows.append({"asset_id": f"photo-{i}", "uri": str(photo), "text": None})
    (corpus / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    rows.append({"asset_id": "broken", "uri": str(corpus / "broken.jpg"), "text": None})
    rows.append({"asset_id": "outside", "uri": "/etc/hostname.txt", "text": None})
    for i in range(4):
        rows.append({"asset_id": f"note-{i}", "uri": None, "text": f"note {i} on the heron"})
    manifest = corpus / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    common = [
        "usecase=mixed_media",
        f"manifest={manifest}",
        *emulator.pipeline_overrides(),
        f"qdrant.path={tmp_path / 'qdrant'}",
        f"run_dir={tmp_path / 'runs'}",
        f"state.path={tmp_path / 'state'}",
        "bedrock.max_attempts=2",
        "bedrock.base_backoff_s=0.05",
    ]
    # A run with retried throttles and a failure the service gives for one input.
    emulator.emulator.script(
        ["ok", "ThrottlingException", "ModelErrorException", "ModelErrorException"]
    )
    first = _job(tmp_path, *common)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "dead-lettered" in first.stdout and "1 throttled" in first.stdout, first.stdout
    # A run the endpoint refuses after its preflight: it stops as an infrastructure failure,
    # with the exception's message in its output and report.
    rows.append({"asset_id": "note-new", "uri": None, "text": "a new note: the heron flies"})
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    emulator.emulator.script(["ok", *["AccessDeniedException"] * 20])
    second = _job(tmp_path, *common, "retry_dead_letters=true")
    assert second.returncode == 3, second.stderr[-3000:]
    assert "AccessDenied" in second.stdout + second.stderr

    # The job ran with the fake credentials: the endpoint saw the session token in its headers
    # (loopback), so a leak anywhere below would be found.
    places: dict[str, bytes] = {
        "stdout": (first.stdout + second.stdout).encode(),
        "stderr": (first.stderr + second.stderr).encode(),
    }
    for folder in ("runs", "state", "qdrant"):
        for path in (tmp_path / folder).rglob("*"):
            if path.is_file():
                places[str(path.relative_to(tmp_path))] = path.read_bytes()
    assert any(p.startswith("runs/") and p.endswith("report.json") for p in places)
    assert any(p.startswith("runs/") and p.endswith("dead_letter.parquet") for p in places)
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        points, _ = client.scroll("mixed_media", limit=1000, with_payload=True)
    finally:
        client.close()
    assert points
    places["payloads"] = repr([p.payload for p in points]).encode()
    found = {where: _leaks(blob) for where, blob in places.items() if _leaks(blob)}
    assert found == {}
