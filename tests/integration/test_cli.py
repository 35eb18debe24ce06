"""The job entry points fail before any work, naming what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_config_value_exits_2_naming_the_key(tmp_path: Path) -> None:
    proc = _run(
        "jobs.backfill",
        "manifest=m.parquet",
        "embedding.dimension=512",
        f"run_dir={tmp_path}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "embedding.dimension" in proc.stderr
    assert not any(tmp_path.iterdir()), "nothing may be written before the config is valid"


def test_malformed_manifest_exits_2_naming_row_and_column(tmp_path: Path) -> None:
    manifest = tmp_path / "m.parquet"
    rows = [
        {"asset_id": "a", "uri": "a.png", "metadata": json.dumps({"k": 1})},
        {"asset_id": "b", "uri": "b.png", "metadata": "not json"},
    ]
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    proc = _run(
        "jobs.backfill",
        f"manifest={manifest}",
        f"run_dir={tmp_path / 'runs'}",
        f"qdrant.path={tmp_path / 'q'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "row 1" in proc.stderr and "metadata" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_manifest_job_scans_a_folder(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("hello world, a small text file")
    (corpus / "b.pdf").write_bytes(b"%PDF-1.7\n%%EOF\n")
    out = tmp_path / "manifest.parquet"
    proc = _run("jobs.manifest", f"source={corpus}", f"out={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(out)
    assert sorted(
        zip(table["asset_id"].to_pylist(), table["modality"].to_pylist(), strict=True)
    ) == [
        ("a.txt", "text"),
        ("b.pdf", "document"),
    ]


def _env_without_aws_credentials(tmp_path: Path) -> dict[str, str]:
    """This process's environment without any AWS credentials (nor a way to find some)."""
    empty = tmp_path / "empty-aws-file"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_"))}
    env.update(
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_EC2_METADATA_DISABLED="true",
        RAY_USAGE_STATS_ENABLED="0",
    )
    return env


_CONNECTED_FIRST = """
import json, sys
import ray
from pipelines.backfill import run_backfill
from pipelines.config.compose import compose_backfill
from nova_devkit.emulator.config import EmulatorConfig
from nova_devkit.emulator.launch import local_endpoints

# Ray is connected before the job, without credentials: the job cannot change its runtime env.
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
with local_endpoints(EmulatorConfig()) as ep:
    result = run_backfill(compose_backfill(["usecase=text_retrieval", *sys.argv[1:],
                                            *ep.pipeline_overrides()]))
print("REPORT " + json.dumps(result.report))
"""


@pytest.mark.integration
@pytest.mark.slow
def test_a_job_in_an_already_connected_ray_gives_its_workers_dummy_credentials(
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "m.parquet"
    rows = [{"asset_id": f"t{i}", "uri": None, "text": f"note number {i}"} for i in range(2)]
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _CONNECTED_FIRST,
            f"manifest={manifest}",
            f"run_dir={tmp_path / 'runs'}",
            f"qdrant.path={tmp_path / 'q'}",
        ],
        cwd=tmp_path,
        env=_env_without_aws_credentials(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "using dummy credentials for the loopback endpoints" in proc.stdout
    report = json.loads(proc.stdout.split("REPORT ", 1)[1])
    assert (report["rows"], report["embedded"], report["dead_lettered"]) == (2, 2, 0), report
    assert report["count_check"]["ok"]
