"""Label new assets by a similarity-weighted vote of their top-K labelled neighbours.

    python -m jobs.classify usecase=product_classification qdrant.collection=<labelled> \\
        manifest=<assets to label> k=5

Writes ``predictions.parquet`` (``asset_id``, ``predicted_label``, ``score``) and
``classification.json`` (accuracy, per-class precision and recall, confusion matrix, plotted to
``confusion.png`` when the manifest has labels) under ``runs/<usecase>/classify-<run id>/``.
See ``docs/analytics.md``. Exit codes: 0 (labelled), 2 (a bad key, manifest or collection),
3 (the store, Ray or Bedrock failed).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from pipelines.config.compose import CONF_PATH
from pipelines.config.schema import ClassifyJobConfig
from pipelines.config.store import register_configs
from pipelines.core.job_entry import exit_codes, job_config

register_configs()


@hydra.main(version_base=None, config_path=CONF_PATH, config_name="classify")
def main(dcfg: DictConfig) -> None:
    from pipelines.analytics.classify import format_summary, run_classify

    cfg = job_config(dcfg, ClassifyJobConfig)
    result = exit_codes(lambda: run_classify(cfg))
    print(format_summary(result))


if __name__ == "__main__":
    main()
