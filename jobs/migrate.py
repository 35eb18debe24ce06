"""Move an alias to a collection built with new parameters, validated before the switch.

    python -m jobs.migrate usecase=document_retrieval manifest=m.parquet alias=docs \
        embedding.dimension=1024
    python -m jobs.migrate usecase=document_retrieval manifest=m.parquet alias=docs \
        embedding.dimension=256 strategy=matryoshka
    python -m jobs.migrate usecase=document_retrieval alias=docs rollback=true
    python -m jobs.migrate usecase=document_retrieval qdrant.collection=docs adopt=true

See ``docs/migrations.md``; exit codes in ``docs/scheduled-backfills.md`` (6: validation failed,
the alias was not switched).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from pipelines.config.compose import CONF_PATH
from pipelines.config.schema import MigrateJobConfig
from pipelines.config.store import register_configs
from pipelines.core.job_entry import exit_codes, job_config

register_configs()


@hydra.main(version_base=None, config_path=CONF_PATH, config_name="migrate")
def main(dcfg: DictConfig) -> None:
    from pipelines.migrate import run_migration

    cfg = job_config(dcfg, MigrateJobConfig)
    result = exit_codes(lambda: run_migration(cfg))
    sys.exit(result.exit_code)


if __name__ == "__main__":
    main()
