"""Near-duplicate groups over a collection, with per-modality thresholds.

    python -m jobs.duplicates usecase=mixed_media
    python -m jobs.duplicates usecase=product_search thresholds.image=0.95

Writes ``duplicates.parquet`` (``group_id``, ``asset_id``, ``similarity``) and
``duplicates.json`` under ``runs/<usecase>/duplicates-<run id>/``. See ``docs/analytics.md``.
Exit codes: 0 (done, possibly no groups), 2 (a bad key or collection), 3 (the store or Ray
failed).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from pipelines.config.compose import CONF_PATH
from pipelines.config.schema import DuplicatesJobConfig
from pipelines.config.store import register_configs
from pipelines.core.job_entry import exit_codes, job_config

register_configs()


@hydra.main(version_base=None, config_path=CONF_PATH, config_name="duplicates")
def main(dcfg: DictConfig) -> None:
    from pipelines.analytics.duplicates import format_summary, run_duplicates

    cfg = job_config(dcfg, DuplicatesJobConfig)
    result = exit_codes(lambda: run_duplicates(cfg))
    print(format_summary(result))


if __name__ == "__main__":
    main()
