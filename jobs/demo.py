"""``make demo``: generate a corpus, start the local endpoints, backfill and query every use case.

python -m jobs.demo [out_dir=demo_data] [usecases=[product_search,mixed_media]]
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from pipelines.demo import DemoConfig

ConfigStore.instance().store(name="demo_schema", node=DemoConfig)


@hydra.main(version_base=None, config_path="../conf", config_name="demo")
def main(dcfg: DictConfig) -> None:
    from pipelines.demo import run_demo

    # botocore logs every credential lookup at INFO under Hydra's default logging.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, DemoConfig)
    results = run_demo(cfg)
    misses = [
        u
        for u, r in results.items()
        if isinstance(r, dict) and not all(q["top_hit_ok"] for q in r["queries"])
    ]
    if misses:
        print(f"[demo] queries that missed their expected hit: {misses}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
