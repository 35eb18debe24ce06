"""Estimate a backfill before paying for it: what it would embed, its Bedrock calls, its cost and
how long the quota makes it take, without calling Bedrock or writing anything.

    python -m jobs.estimate usecase=document_retrieval manifest=demo_data/manifest.parquet
    python -m jobs.estimate usecase=document_retrieval manifest=m.parquet plan_only=true

Takes the backfill's keys (the same config); with the backfill's ``state.path`` and collection,
only what a real run would do is estimated. Writes ``estimate.json`` in the run folder (see
``docs/estimates.md``). Exit codes as the backfill's (``docs/scheduled-backfills.md``).
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
    from pipelines.estimate import run_estimate

    logging.getLogger("botocore").setLevel(logging.WARNING)
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, BackfillJobConfig)
    cfg.dry_run = not cfg.plan_only
    try:
        run_estimate(cfg)
    except (ConfigError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except InfrastructureError as exc:
        print(f"infrastructure error: {exc}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
