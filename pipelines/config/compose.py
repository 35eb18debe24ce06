"""Compose a job's configuration in code exactly as its command line would."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipelines.config.schema import BackfillJobConfig

# The jobs' YAML ships inside the package (``pipelines/conf/``, package data), so an installed
# wheel finds it as well as the checkout. ``@hydra.main(config_path=CONF_PATH)`` resolves it
# through importlib whatever the caller's file or working directory.
CONF_MODULE = "pipelines.conf"
CONF_PATH = f"pkg://{CONF_MODULE}"
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_backfill(overrides: Sequence[str] = ()) -> BackfillJobConfig:
    """``backfill.yaml`` with ``overrides``, typed, as ``python -m jobs.backfill`` builds it.

    Works inside a running ``@hydra.main`` app (whose search path already holds the job configs)
    and outside one (notebooks, tests, benchmarks).
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from pipelines.config.store import register_configs

    register_configs()
    if GlobalHydra.instance().is_initialized():
        cfg = compose("backfill", overrides=list(overrides))
    else:
        with initialize_config_module(config_module=CONF_MODULE, version_base=None):
            cfg = compose("backfill", overrides=list(overrides))
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, BackfillJobConfig)
    return obj
