"""Topic clusters over a collection's vectors (the CLUSTERING purpose), chosen or estimated.

    python -m jobs.cluster usecase=topic_clustering
    python -m jobs.cluster usecase=topic_clustering clusters=8 representatives=5

Writes ``clusters.parquet`` (sizes, representative members), ``assignments.parquet`` (each
point's cluster), ``clusters.json`` and ``clusters.png`` under
``runs/<usecase>/cluster-<run id>/``. See ``docs/analytics.md``. Exit codes: 0 (done), 2 (a bad
key or collection), 3 (the store or Ray failed).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from pipelines.config.compose import CONF_PATH
from pipelines.config.schema import ClusterJobConfig
from pipelines.config.store import register_configs
from pipelines.core.job_entry import exit_codes, job_config

register_configs()


@hydra.main(version_base=None, config_path=CONF_PATH, config_name="cluster")
def main(dcfg: DictConfig) -> None:
    from pipelines.analytics.cluster import format_summary, run_cluster

    cfg = job_config(dcfg, ClusterJobConfig)
    result = exit_codes(lambda: run_cluster(cfg))
    print(format_summary(result))


if __name__ == "__main__":
    main()
