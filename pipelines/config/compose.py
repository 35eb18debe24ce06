"""Compose a job's configuration in code exactly as its command line would."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipelines.config.schema import BackfillJobConfig

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_backfill(overrides: Sequence[str] = ()) -> BackfillJobConfig:
    """``conf/backfill.yaml`` with ``overrides``, typed, as ``python -m jobs.backfill`` builds it.

    Works inside a running ``@hydra.main`` app (whose search path already holds ``conf/``) and
    outside one (notebooks, tests, benchmarks).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from pipelines.config.store import register_configs

    register_configs()
    if GlobalHydra.instance().is_initialized():
        cfg = compose("backfill", overrides=list(overrides))
    else:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose("backfill", overrides=list(overrides))
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, BackfillJobConfig)
    return obj
