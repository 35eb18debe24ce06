"""Estimate a backfill before paying for it: what it would embed, its Bedrock calls, its cost and
how long the quota makes it take, without calling Bedrock or writing anything.

    python -m jobs.estimate usecase=document_retrieval manifest=demo_data/manifest.parquet
    python -m jobs.estimate usecase=document_retrieval manifest=m.parquet plan_only=true

Takes the backfill's keys (the same config); with the backfill's ``state.path`` and collection,
only what a real run would do is estimated. Writes ``estimate.json`` in the run folder (see
``docs/estimates.md``). Exit codes as the backfill's (``docs/scheduled-backfills.md``).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from pipelines.config.compose import CONF_PATH
from pipelines.config.schema import BackfillJobConfig
from pipelines.config.store import register_configs
from pipelines.core.job_entry import exit_codes, job_config

register_configs()


@hydra.main(version_base=None, config_path=CONF_PATH, config_name="backfill")
def main(dcfg: DictConfig) -> None:
    from pipelines.estimate import run_estimate

    cfg = job_config(dcfg, BackfillJobConfig)
    cfg.dry_run = not cfg.plan_only
    exit_codes(lambda: run_estimate(cfg))


if __name__ == "__main__":
    main()
