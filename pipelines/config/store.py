"""Registers the typed schemas with Hydra's ConfigStore.

``pipelines/conf/backfill.yaml`` lists ``backfill_schema`` first in its defaults, so every YAML
value and command-line override is checked against
:class:`~pipelines.config.schema.BackfillJobConfig`: an unknown key or a wrong type fails at
composition, naming the key.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from pipelines.config.schema import (
    BackfillJobConfig,
    ClassifyJobConfig,
    ClusterJobConfig,
    DuplicatesJobConfig,
    EvaluateJobConfig,
    McpJobConfig,
    MigrateJobConfig,
    SearchJobConfig,
)

_REGISTERED = False


def register_configs() -> None:
    """Idempotent: safe to call from every entry point."""
    global _REGISTERED
    if _REGISTERED:
        return
    cs = ConfigStore.instance()
    cs.store(name="backfill_schema", node=BackfillJobConfig)
    cs.store(name="migrate_schema", node=MigrateJobConfig)
    cs.store(name="search_schema", node=SearchJobConfig)
    cs.store(name="evaluate_schema", node=EvaluateJobConfig)
    cs.store(name="classify_schema", node=ClassifyJobConfig)
    cs.store(name="duplicates_schema", node=DuplicatesJobConfig)
    cs.store(name="cluster_schema", node=ClusterJobConfig)
    cs.store(name="mcp_schema", node=McpJobConfig)
    _REGISTERED = True
