"""Hostile manifests: inputs are read only under the allowed roots and S3 prefixes.

Each test runs the real backfill against the local endpoint and its S3 and asserts on what the
run left behind: dead-letter rows and their codes, the requests the endpoint recorded, the
collection read back and the staging bucket listed. A file outside the roots holds a marker; it
must appear nowhere the job writes or sends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from nova_devkit.media import make_product_photo
from pipelines.backfill import BackfillResult, run_backfill
from pipelines.config.compose import compose_backfill
from pipelines.core import codes
from pipelines.core.errors import ConfigError
from pipelines.core.incremental import content_versions
from pipelines.core.io import InputPolicy, InputRefused
from pipelines.core.scan import scan_source

pytestmark = [pytest.mark.integration]

MARKER = "TOP-SECRET-4f1d9c-do-not-embed"
OUTSIDE = codes.INPUT_OUTSIDE_ROOTS


def _secret(root: Path) -> Path:
    """A file outside the corpus folder that no run may read."""
    secret = root / "elsewhere" / "credentials.txt"
    secret.parent.mkdir(parents=True)
    secret.write_text(f"{MARKER}\naws_secret_access_key = {MARKER}\n" * 20)
    return secret


def _note(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"field note {seed}: the heron waits by the reed bed at dawn. " * 8)
    return path


def _run(manifest: Path, root: Path, emulator: Endpoints, *more: str) -> BackfillResult:
    cfg = compose_backfill(
        [
            "usecase=mixed_media",
            f"manifest={manifest}",
            *emulator.pipeline_overrides(),
            f"qdrant.path={root / 'qdrant'}",
            "qdrant.collection=hostile",
            f"run_dir={root / 'runs'}",
            f"state.path={root / 'state'}",
            "bedrock.async_poll_min_s=0.1",
            "bedrock.async_poll_max_s=0.5",
            *more,
        ]
    )
    return run_backfill(cfg)


def _dead(result: BackfillResult) -> dict[str, str]:
    rows = pq.read_table(result.dead_letter_path).to_pylist()
    return {r["asset_id"]: r["error_code"] for r in rows}


def _payloads(root: Path) -> list[dict[str, Any]]:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(root / "qdrant"))
    try:
        points, _ = client.scroll("hostile", limit=10_000, with_payload=True, with_vectors=False)
        return [dict(p.payload or {}) for p in points]
    finally:
        client.close()


def _everything_sent(emulator: Endpoints) -> str:
    return "\n".join(repr(r.body) + " " + r.path for r in emulator.emulator.requests)


@pytest.mark.usefixtures("ray_session")
def test_local_paths_outside_the_manifest_folder_are_dead_lettered_and_never_read(
    emulator: Endpoints, tmp_path: Path, s3: Any, bucket: str
) -> None:
    secret = _secret(tmp_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    photo = make_product_photo(corpus / "photo.jpg", seed=3, size=(96, 64))
    _note(corpus / "notes" / "a.txt", 1)
    (corpus / "alias.txt").symlink_to(corpus / "notes" / "a.txt")  # a link inside: allowed
    (corpus / "leak.txt").symlink_to(secret)  # a link out of the folder
    (corpus / "linked-dir").symlink_to(secret.parent, target_is_directory=True)
    s3.put_object(Bucket=bucket, Key="public/b.txt", Body=b"a public note about reed beds " * 9)
    s3.put_object(Bucket=bucket, Key="private/c.txt", Body=(MARKER + " ").encode() * 9)
    rows = [
        {"asset_id": "photo", "uri": str(photo), "modality": "image"},
        # Relative paths are the manifest's folder's, not the worker's current folder.
        {"asset_id": "relative", "uri": "notes/a.txt", "modality": "text"},
        {"asset_id": "link-inside", "uri": str(corpus / "alias.txt"), "modality": "text"},
        {"asset_id": "s3-allowed", "uri": f"s3://{bucket}/public/b.txt", "modality": "text"},
        # Hostile rows: every way out of the folder and the allowed prefix.
        {"asset_id": "absolute", "uri": str(secret), "modality": "text"},
        {"asset_id": "file-uri", "uri": f"file://{secret}", "modality": "text"},
        {"asset_id": "dotdot", "uri": "../elsewhere/credentials.txt", "modality": "text"},
        {"asset_id": "dotdot-abs", "uri": f"{corpus}/notes/../../elsewhere/credentials.txt"},
        {"asset_id": "link-out", "uri": str(corpus / "leak.txt"), "modality": "text"},
        {"asset_id": "link-dir", "uri": "linked-dir/credentials.txt", "modality": "text"},
        {"asset_id": "aws-file", "uri": os.path.expanduser("~/.aws/credentials")},
        {"asset_id": "s3-outside", "uri": f"s3://{bucket}/private/c.txt", "modality": "text"},
        {"asset_id": "s3-dotdot", "uri": f"s3://{bucket}/public/../private/c.txt"},
    ]
    for row in rows:
        row.setdefault("modality", "text")
    manifest = corpus / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)

    result = _run(
        manifest, tmp_path, emulator, f"inputs.allowed_s3_prefixes=[s3://{bucket}/public]"
    )

    hostile = {r["asset_id"] for r in rows} - {"photo", "relative", "link-inside", "s3-allowed"}
    assert _dead(result) == dict.fromkeys(hostile, OUTSIDE)
    report = result.report
    assert report["embedded"] == 4 and report["dead_lettered"] == len(hostile)
    payloads = _payloads(tmp_path)
    assert {p["asset_id"] for p in payloads} == {"photo", "relative", "link-inside", "s3-allowed"}
    # Nothing of the secret crossed the wire or reached the collection.
    sent = _everything_sent(emulator)
    assert MARKER not in sent and "private/c.txt" not in sent
    assert MARKER not in repr(payloads) and str(secret.parent) not in repr(payloads)
    # The preflight's call and one per distinct content (the link inside is the relative
    # note's copy): none was spent on a refused row.
    calls = [r for r in emulator.emulator.requests if r.operation == "InvokeModel"]
    assert len(calls) == 1 + 3
    # The payload keeps the manifest's uri, not the path the check resolved.
    assert {p["uri"] for p in payloads if p["asset_id"] == "relative"} == {"notes/a.txt"}


@pytest.mark.usefixtures("ray_session")
def test_service_mode_stages_nothing_outside_the_roots_and_removes_its_copies(
    emulator: Endpoints, tmp_path: Path, s3: Any, bucket: str
) -> None:
    secret = _secret(tmp_path)
    corpus = tmp_path / "corpus"
    note = _note(corpus / "note.txt", 2)
    rows = [
        {"asset_id": "note", "uri": str(note), "modality": "text", "text": None},
        {"asset_id": "inline", "uri": None, "modality": "text", "text": "a short inline note"},
        {"asset_id": "absolute", "uri": str(secret), "modality": "text"},
        {"asset_id": "dotdot", "uri": "../elsewhere/credentials.txt", "modality": "text"},
    ]
    manifest = corpus / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)

    result = _run(
        manifest,
        tmp_path,
        emulator,
        "usecase.modalities=[text]",
        "segmentation.mode=service",
        f"bedrock.s3_staging_uri=s3://{bucket}/staging",
        # No StartAsyncInvoke quota at the local endpoint: the pipeline's default of 60 starts
        # a minute would pace this run (test_backfill.py's service run: 21 s, unpaced 6 s).
        "bedrock.quota.async_requests_per_minute=6000",
    )

    assert _dead(result) == {"absolute": OUTSIDE, "dotdot": OUTSIDE}
    assert result.report["embedded"] == 2
    started = [r for r in emulator.emulator.requests if r.operation == "StartAsyncInvoke"]
    assert len(started) == 2
    assert MARKER not in _everything_sent(emulator)
    # The staged copies (the local file and the inline text) are gone; the job outputs stay.
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="staging/").get("Contents", [])
    ]
    assert keys and not [k for k in keys if k.startswith("staging/inputs/")], keys


@pytest.mark.usefixtures("ray_session")
def test_wider_roots_are_configured_explicitly(emulator: Endpoints, tmp_path: Path) -> None:
    elsewhere = _note(tmp_path / "shared" / "n.txt", 4)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    manifest = corpus / "manifest.parquet"
    rows = [{"asset_id": "shared", "uri": str(elsewhere), "modality": "text"}]
    pq.write_table(pa.Table.from_pylist(rows), manifest)

    refused = _run(manifest, tmp_path / "a", emulator)
    allowed = _run(
        manifest, tmp_path / "b", emulator, f"inputs.allowed_roots=[{tmp_path / 'shared'}]"
    )

    assert _dead(refused) == {"shared": OUTSIDE}
    assert allowed.report["embedded"] == 1 and _dead(allowed) == {}


def test_content_versions_do_not_read_outside_the_roots(tmp_path: Path) -> None:
    secret = _secret(tmp_path)
    inside = _note(tmp_path / "corpus" / "a.txt", 5)
    policy = InputPolicy.for_manifest(str(tmp_path / "corpus" / "manifest.parquet"))
    table = pa.Table.from_pylist(
        [
            {"uri": str(inside), "text": None, "content_version": None},
            {"uri": "a.txt", "text": None, "content_version": None},
            {"uri": str(secret), "text": None, "content_version": None},
            {"uri": "../elsewhere/credentials.txt", "text": None, "content_version": None},
        ],
        schema=pa.schema(
            [("uri", pa.string()), ("text", pa.string()), ("content_version", pa.string())]
        ),
    )
    versions = content_versions(table, None, policy).column("content_version").to_pylist()
    assert versions[0] is not None and versions[0] == versions[1]
    assert versions[2:] == [None, None]


def test_the_scanner_does_not_follow_links_out_of_its_folder(tmp_path: Path) -> None:
    secret = _secret(tmp_path)
    corpus = tmp_path / "corpus"
    _note(corpus / "a.txt", 6)
    (corpus / "inside-link.txt").symlink_to(corpus / "a.txt")
    (corpus / "leak.txt").symlink_to(secret)
    (corpus / "linked-dir").symlink_to(secret.parent, target_is_directory=True)

    result = scan_source(str(corpus))

    assert sorted(result.table.column("asset_id").to_pylist()) == ["a.txt", "inside-link.txt"]
    assert result.skipped_outside == ["leak.txt"]
    assert "1 links to files outside the folder" in result.summary()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("inputs.allowed_s3_prefixes=[bucket/x]", "inputs.allowed_s3_prefixes"),
        ("inputs.allowed_roots=['']", "inputs.allowed_roots"),
        ("inputs.allowed_roots=[s3://bucket/x]", "inputs.allowed_roots"),
    ],
)
def test_bad_input_settings_fail_before_work_naming_the_key(
    tmp_path: Path, override: str, key: str
) -> None:
    cfg = compose_backfill(
        [f"manifest={tmp_path / 'm.parquet'}", f"run_dir={tmp_path / 'runs'}", override]
    )
    with pytest.raises(ConfigError) as err:
        run_backfill(cfg)
    assert err.value.key == key
    assert not (tmp_path / "runs").exists()


def test_the_policy_refuses_by_real_path_and_prefix(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "up").symlink_to(tmp_path, target_is_directory=True)
    policy = InputPolicy.for_manifest(
        str(corpus / "m.parquet"), allowed_s3_prefixes=["s3://b/data"]
    )
    assert policy.check("x.png") == os.path.join(str(corpus), "x.png")
    assert policy.check("s3://b/data/x.png") == "s3://b/data/x.png"
    for uri in (
        "up/elsewhere.txt",  # a linked folder that leaves the root
        "/etc/passwd",
        "s3://b/database.png",  # "data" is a folder, not a key prefix
        "s3://other/data/x.png",
    ):
        with pytest.raises(InputRefused):
            policy.check(uri)
    s3_manifest = InputPolicy.for_manifest("s3://b/m.parquet")
    with pytest.raises(InputRefused):
        s3_manifest.check("notes/a.txt")
    assert s3_manifest.check("s3://anything/at/all") == "s3://anything/at/all"
