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

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from pipelines.config.compose import CONF_PATH
from pipelines.config.schema import MigrateJobConfig
from pipelines.config.store import register_configs
from pipelines.core.errors import ConfigError, InfrastructureError, ManifestError

register_configs()


@hydra.main(version_base=None, config_path=CONF_PATH, config_name="migrate")
def main(dcfg: DictConfig) -> None:
    from pipelines.migrate import run_migration

    logging.getLogger("botocore").setLevel(logging.WARNING)
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, MigrateJobConfig)
    try:
        result = run_migration(cfg)
    except (ConfigError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except InfrastructureError as exc:
        print(f"infrastructure error: {exc}", file=sys.stderr)
        sys.exit(3)
    sys.exit(result.exit_code)


if __name__ == "__main__":
    main()
