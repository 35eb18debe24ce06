"""Schema of ``python -m jobs.manifest`` (scan a folder or S3 prefix into a manifest).

Registered in Hydra's ConfigStore as ``manifest_schema``; ``pipelines/conf/manifest.yaml`` extends
it, so a wrong type or unknown key fails at composition.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.core.scan import DEFAULT_HASH_MAX_BYTES


@dataclass
class ManifestJobConfig:
    """``python -m jobs.manifest source=<folder|s3://bucket/prefix> out=<file.parquet>``."""

    # A local folder (path or file://) or s3://bucket/prefix.
    source: str = "???"
    # Where the manifest is written: local path or s3://bucket/key.parquet.
    out: str = "manifest.parquet"
    # S3-compatible endpoint for source and out (moto locally); unset = AWS.
    s3_endpoint_url: str | None = None
    # Accept an http:// s3_endpoint_url on another host (credentials and content in clear).
    allow_insecure_endpoint: bool = False
    recursive: bool = True
    include_hidden: bool = False
    # Local files up to this size get a sha256 content_version; larger ones mtime+size.
    hash_max_bytes: int = DEFAULT_HASH_MAX_BYTES


def register() -> None:
    """Register the schema in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="manifest_schema", node=ManifestJobConfig)
