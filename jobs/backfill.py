"""Embed a corpus described by a Parquet manifest into Qdrant.

    python -m jobs.backfill usecase=document_retrieval manifest=s3://bucket/m.parquet
    python -m jobs.backfill usecase=document_retrieval manifest=demo_data/manifest.parquet \
        bedrock=emulator qdrant.path=.qdrant

Works the same under ``ray job submit --working-dir . -- python -m jobs.backfill ray=cluster ...``
with an ``s3://`` or absolute manifest path (see ``docs/running-on-ray.md``).
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from pipelines.config.compose import CONF_PATH
from pipelines.config.schema import BackfillJobConfig
from pipelines.config.store import register_configs
from pipelines.core.errors import ConfigError, InfrastructureError, ManifestError

register_configs()


@hydra.main(version_base=None, config_path=CONF_PATH, config_name="backfill")
def main(dcfg: DictConfig) -> None:
    from pipelines.backfill import run_backfill
    from pipelines.estimate import run_estimate

    # botocore logs every credential lookup at INFO under Hydra's default logging.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, BackfillJobConfig)
    # Exit codes: docs/scheduled-backfills.md.
    try:
        if cfg.dry_run or cfg.plan_only:
            run_estimate(cfg)  # estimate.json in the run folder; nothing is called or written
            sys.exit(0)
        result = run_backfill(cfg)
    except (ConfigError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except InfrastructureError as exc:
        print(f"infrastructure error: {exc}", file=sys.stderr)
        sys.exit(3)
    sys.exit(result.exit_code)


if __name__ == "__main__":
    main()
