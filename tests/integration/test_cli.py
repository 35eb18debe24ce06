"""The job entry points fail before any work, naming what is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


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
