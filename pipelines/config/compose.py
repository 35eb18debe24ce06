"""Compose a job's configuration in code exactly as its command line would."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipelines.config.schema import (
    AnalyticsJobConfig,
    BackfillJobConfig,
    EvaluateJobConfig,
    McpJobConfig,
    MigrateJobConfig,
    SearchJobConfig,
)

# The jobs' YAML ships inside the package (``pipelines/conf/``, package data), so an installed
# wheel finds it as well as the checkout. ``@hydra.main(config_path=CONF_PATH)`` resolves it
# through importlib whatever the caller's file or working directory.
CONF_MODULE = "pipelines.conf"
CONF_PATH = f"pkg://{CONF_MODULE}"
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_backfill(overrides: Sequence[str] = ()) -> BackfillJobConfig:
    """``backfill.yaml`` with ``overrides``, typed (see :func:`_compose`)."""
    obj = _compose("backfill", overrides)
    assert isinstance(obj, BackfillJobConfig)
    return obj


def compose_migrate(overrides: Sequence[str] = ()) -> MigrateJobConfig:
    """``migrate.yaml`` with ``overrides``, typed, as ``python -m jobs.migrate`` builds it."""
    obj = _compose("migrate", overrides)
    assert isinstance(obj, MigrateJobConfig)
    return obj


def compose_search(overrides: Sequence[str] = ()) -> SearchJobConfig:
    """``search.yaml`` with ``overrides`` (``filter.<field>=value`` accepted as on the command
    line), typed, as ``python -m jobs.search`` builds it."""
    obj = _compose("search", filter_overrides(overrides))
    assert isinstance(obj, SearchJobConfig)
    return obj


def compose_evaluate(overrides: Sequence[str] = ()) -> EvaluateJobConfig:
    """``evaluate.yaml`` with ``overrides``, typed, as ``python -m jobs.evaluate`` builds it."""
    obj = _compose("evaluate", filter_overrides(overrides))
    assert isinstance(obj, EvaluateJobConfig)
    return obj


def compose_analytics(name: str, overrides: Sequence[str] = ()) -> AnalyticsJobConfig:
    """``<name>.yaml`` (``classify``, ``duplicates``, ``cluster``) with ``overrides``, typed, as
    ``python -m jobs.<name>`` builds it."""
    obj = _compose(name, overrides)
    assert isinstance(obj, AnalyticsJobConfig)
    return obj


def compose_mcp(overrides: Sequence[str] = ()) -> McpJobConfig:
    """``mcp.yaml`` with ``overrides``, typed, as ``python -m jobs.mcp`` builds it."""
    obj = _compose("mcp", filter_overrides(overrides))
    assert isinstance(obj, McpJobConfig)
    return obj


def filter_overrides(args: Sequence[str]) -> list[str]:
    """``filter.<field>=value`` made an addition (``+filter.<field>=value``): the fields are the
    payload's, not the schema's, so Hydra would refuse them as unknown keys."""
    return [f"+{a}" if a.startswith("filter.") else a for a in args]


def _compose(name: str, overrides: Sequence[str]) -> object:
    """The job config ``<name>.yaml`` with ``overrides``, typed, as its command line builds it.

    Works outside a Hydra app (notebooks, tests, benchmarks) and inside another one (the demo,
    whose search path does not hold the job configs): Hydra's global state is set aside while
    composing and put back after.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup
    from omegaconf import OmegaConf

    from pipelines.config.store import register_configs

    register_configs()
    running = GlobalHydra.instance().is_initialized()
    backup = get_gh_backup() if running else None
    if running:
        GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONF_MODULE, version_base=None):
            cfg = compose(name, overrides=list(overrides))
    finally:
        if running:
            restore_gh_from_backup(backup)
    return OmegaConf.to_object(cfg)
