"""Embed a corpus described by a Parquet manifest into Qdrant.

    python -m jobs.backfill usecase=document_retrieval manifest=s3://bucket/m.parquet
    python -m jobs.backfill usecase=document_retrieval manifest=demo_data/manifest.parquet \
        bedrock=emulator qdrant.path=.qdrant

Works the same under ``ray job submit --working-dir . -- python -m jobs.backfill ray=cluster ...``
with an ``s3://`` or absolute manifest path (see ``docs/running-on-ray.md``).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from pipelines.config.compose import CONF_PATH
from pipelines.config.schema import BackfillJobConfig
from pipelines.config.store import register_configs
from pipelines.core.job_entry import exit_codes, job_config

register_configs()


@hydra.main(version_base=None, config_path=CONF_PATH, config_name="backfill")
def main(dcfg: DictConfig) -> None:
    from pipelines.backfill import run_backfill
    from pipelines.estimate import run_estimate

    cfg = job_config(dcfg, BackfillJobConfig)
    # Exit codes: docs/scheduled-backfills.md.
    if cfg.dry_run or cfg.plan_only:
        exit_codes(lambda: run_estimate(cfg))  # estimate.json in the run folder; nothing spent
        sys.exit(0)
    result = exit_codes(lambda: run_backfill(cfg))
    sys.exit(result.exit_code)


if __name__ == "__main__":
    main()
