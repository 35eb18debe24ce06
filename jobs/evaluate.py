"""Measure a collection's retrieval quality on a query set: recall@k, MRR and nDCG, overall, per
query modality and per query kind; printed, in ``evaluation.json`` and plotted (PNG).

    python -m jobs.evaluate usecase=mixed_media queries=queries.parquet k=10
    python -m jobs.evaluate usecase=text_retrieval queries=q.parquet search.mode=hybrid

See ``docs/search-and-evaluation.md``. Exit codes: 0 (measured), 2 (a bad key, query set or
collection), 3 (the store or Bedrock failed).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from pipelines.config.compose import CONF_PATH, filter_overrides
from pipelines.config.schema import EvaluateJobConfig
from pipelines.config.store import register_configs
from pipelines.core.job_entry import exit_codes, job_config

register_configs()


@hydra.main(version_base=None, config_path=CONF_PATH, config_name="evaluate")
def main(dcfg: DictConfig) -> None:
    from pipelines.evaluate_collection import format_report, run_evaluation

    cfg = job_config(dcfg, EvaluateJobConfig)
    result = exit_codes(lambda: run_evaluation(cfg))
    print(format_report(result))
    print(f"report: {result.report_path}")
    print(f"plot:   {result.plot_path}")


if __name__ == "__main__":
    sys.argv[1:] = filter_overrides(sys.argv[1:])
    main()
