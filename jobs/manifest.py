"""Scan a folder or S3 prefix into a manifest.

``python -m jobs.manifest source=<folder|s3://bucket/prefix> out=<file.parquet>``
(optional: ``s3_endpoint_url=http://127.0.0.1:8766 recursive=false include_hidden=true``; with
an ``s3_endpoint_url`` on this machine and no AWS credentials, dummy ones are used).
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from pipelines.config.compose import CONF_PATH
from pipelines.config.manifest_schema import ManifestJobConfig, register

register()


def run(cfg: ManifestJobConfig) -> str:
    """Scan, validate and write the manifest; prints a summary and returns the output URI."""
    import pyarrow.parquet as pq

    from pipelines.config.validate import check_endpoint_transport
    from pipelines.core.credentials import apply_to_environment, resolve_for_endpoints
    from pipelines.core.manifest import resolve_filesystem, validate_manifest
    from pipelines.core.scan import scan_source

    check_endpoint_transport(
        "s3_endpoint_url",
        cfg.s3_endpoint_url,
        "allow_insecure_endpoint",
        cfg.allow_insecure_endpoint,
    )
    if cfg.source.startswith("s3://") or cfg.out.startswith("s3://"):
        credentials = resolve_for_endpoints(
            {"s3_endpoint_url": cfg.s3_endpoint_url},
            hint=(
                "or point s3_endpoint_url at the local S3 (python -m nova_devkit.emulator "
                "prints it)"
            ),
        )
        if credentials.dummy:
            apply_to_environment(credentials)
            print(credentials.describe(), flush=True)
    result = scan_source(
        cfg.source,
        s3_endpoint_url=cfg.s3_endpoint_url,
        recursive=cfg.recursive,
        include_hidden=cfg.include_hidden,
        hash_max_bytes=cfg.hash_max_bytes,
    )
    # The manifest must pass the same validation a backfill applies to it.
    validate_manifest(result.table)
    fs, path = resolve_filesystem(cfg.out, cfg.s3_endpoint_url)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent and not cfg.out.startswith("s3://"):
        fs.create_dir(parent, recursive=True)
    pq.write_table(result.table, path, filesystem=fs)
    print(result.summary())
    print(f"manifest: {cfg.out} ({result.table.num_rows} rows)")
    return cfg.out


@hydra.main(version_base="1.3", config_path=CONF_PATH, config_name="manifest")
def main(dcfg: DictConfig) -> None:
    # botocore logs every credential lookup at INFO under Hydra's default logging.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, ManifestJobConfig)
    try:
        run(cfg)
    except (FileNotFoundError, ValueError) as exc:  # ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
