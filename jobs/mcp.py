"""Serve search over the index to agents: an MCP server on stdio.

    python -m jobs.mcp usecase=mixed_media bedrock=emulator
    python -m jobs.mcp usecase=text_retrieval qdrant=server qdrant.url=https://qdrant:6333

Tools ``search``, ``get_asset`` and ``list_collections`` (see ``pipelines/mcp_server.py`` and
``docs/analytics.md``). An MCP client starts this command and speaks over its stdin and stdout.
Exit codes: 0 (the client closed the session), 2 (a bad key).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from pipelines.config.compose import CONF_PATH
from pipelines.config.schema import McpJobConfig
from pipelines.config.store import register_configs
from pipelines.core.job_entry import exit_codes, job_config

register_configs()


@hydra.main(version_base=None, config_path=CONF_PATH, config_name="mcp")
def main(dcfg: DictConfig) -> None:
    from pipelines.mcp_server import serve

    cfg = job_config(dcfg, McpJobConfig)
    exit_codes(lambda: serve(cfg))


if __name__ == "__main__":
    main()
