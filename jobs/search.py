"""Search a collection: a text, a picture, a sound or a clip, or several fused.

    python -m jobs.search usecase=product_search query.image=shoe.jpg query.text="red leather"
    python -m jobs.search usecase=text_retrieval query.text="volcano lava" search.mode=hybrid
    python -m jobs.search usecase=audio_fingerprinting query.audio=excerpt.mp3 format=json
    python -m jobs.search usecase=document_retrieval query.text="quarterly revenue" \\
        group_by=asset filter.label=report

See ``docs/search-and-evaluation.md``. Exit codes: 0 (hits printed, possibly none), 2 (a bad key,
no such collection or file), 3 (the store or Bedrock failed).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from pipelines.config.compose import CONF_PATH, filter_overrides
from pipelines.config.schema import SearchJobConfig
from pipelines.config.store import register_configs
from pipelines.core.job_entry import exit_codes, job_config

register_configs()


@hydra.main(version_base=None, config_path=CONF_PATH, config_name="search")
def main(dcfg: DictConfig) -> None:
    from pipelines.search import print_result, run_search

    cfg = job_config(dcfg, SearchJobConfig)
    result = exit_codes(lambda: run_search(cfg))
    print_result(cfg, result)


if __name__ == "__main__":
    # filter.<field>=value names payload fields, which the schema cannot list.
    sys.argv[1:] = filter_overrides(sys.argv[1:])
    main()
