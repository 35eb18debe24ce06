"""``python -m jobs.mcp``: the index as tools for an agent, over the Model Context Protocol.

Served with the official ``mcp`` SDK on the stdio transport (the client starts the server as a
subprocess and speaks JSON-RPC over its stdin and stdout; every log line goes to stderr). Tools:

- ``search``: ``jobs.search`` as a tool: a text and/or media files (``image``, ``audio``,
  ``video``: paths on the server's machine), optional ``collection`` (alias or name; default
  ``qdrant.collection``), ``top_k``, ``group_by``, ``filter`` (payload field -> value). Returns
  the same hits as ``jobs.search format=json`` (:func:`pipelines.search.hit_record`), as JSON.
- ``get_asset``: the payloads of one asset's points (uri, modality, label, positions, metadata).
- ``list_collections``: the collections and the aliases that point to them.

The store is opened per call and closed after it, so an embedded store's folder is locked only
while a call runs (a backfill or ``jobs.search`` may use it between calls).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pipelines.config.schema import McpJobConfig, QueryConfig, SearchJobConfig
from pipelines.core.errors import ConfigError

INSTRUCTIONS = (
    "Search a multimodal embedding index (Amazon Nova Multimodal Embeddings in Qdrant). "
    "Use `search` with a text and/or a file path (image, audio, video) to find assets, and "
    "`get_asset` to read an asset's payload (its uri, modality, label, pages or time ranges)."
)


def search_config(
    cfg: McpJobConfig,
    *,
    text: str | None = None,
    image: str | None = None,
    audio: str | None = None,
    video: str | None = None,
    collection: str | None = None,
    top_k: int | None = None,
    group_by: str | None = None,
    where: dict[str, Any] | None = None,
) -> SearchJobConfig:
    """The ``jobs.search`` configuration of one tool call."""
    top_k = cfg.top_k if top_k is None else top_k
    if not 1 <= top_k <= cfg.max_top_k:
        raise ConfigError("top_k", f"must be in 1..{cfg.max_top_k}, got {top_k}")
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init}
    for own in ("top_k", "max_top_k"):
        shared.pop(own)
    search = SearchJobConfig(**shared)
    search.query = QueryConfig(text=text, image=image, audio=audio, video=video)
    search.top_k = top_k
    search.group_by = group_by
    search.format = "json"
    search.filter = dict(where or {})
    if collection:
        search.qdrant = dataclasses.replace(cfg.qdrant, collection=collection)
    return search


def tool_search(cfg: McpJobConfig, **kwargs: Any) -> list[dict[str, Any]]:
    from pipelines.search import run_search

    return run_search(search_config(cfg, **kwargs)).hits


def tool_get_asset(cfg: McpJobConfig, asset_id: str, collection: str | None = None) -> dict:
    from pipelines.stores import open_store

    store = open_store(cfg.qdrant, cfg.embedding, cfg.segmentation)
    store.open()
    try:
        name = collection or cfg.qdrant.collection
        physical = store.resolve_alias(name) or name
        if physical not in store.collection_names():
            raise ConfigError("collection", f"no collection or alias named {name!r}")
        points = store.for_collection(physical).payloads_of(asset_id)
        return {"collection": name, "asset_id": asset_id, "points": points}
    finally:
        store.close()


def tool_list_collections(cfg: McpJobConfig) -> dict[str, Any]:
    from pipelines.stores import open_store

    store = open_store(cfg.qdrant, cfg.embedding, cfg.segmentation)
    store.open()
    try:
        aliases = store.aliases()
        return {
            "collections": sorted(store.collection_names()),
            "aliases": dict(sorted(aliases.items())),
            "default": cfg.qdrant.collection,
        }
    finally:
        store.close()


def _answer(call: Any) -> str:
    """A tool's result as JSON text; a bad argument or an infrastructure failure as a tool
    error the agent can read (``{"error": ...}``), not a dead server."""
    from pipelines.core.errors import InfrastructureError

    try:
        return json.dumps(call(), default=str)
    except (ConfigError, InfrastructureError, ValueError, OSError) as exc:
        return json.dumps({"error": str(exc)})


def build_server(cfg: McpJobConfig) -> Any:
    """The MCP server with its three tools (not yet running)."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(name="nova-embed-search", instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool(structured_output=False)
    def search(
        text: str | None = None,
        image: str | None = None,
        audio: str | None = None,
        video: str | None = None,
        collection: str | None = None,
        top_k: int | None = None,
        group_by: str | None = None,
        filter: dict[str, Any] | None = None,  # the tool's argument name
    ) -> str:
        """Search the index with a text and/or media files (paths); several parts are fused.
        Returns a JSON array of hits: score, asset_id, segment_index, position (page, start_s
        and end_s, or char_start and char_end), uri, modality, embedding_type, label."""
        return _answer(
            lambda: tool_search(
                cfg,
                text=text,
                image=image,
                audio=audio,
                video=video,
                collection=collection,
                top_k=top_k,
                group_by=group_by,
                where=filter,
            )
        )

    @server.tool(structured_output=False)
    def get_asset(asset_id: str, collection: str | None = None) -> str:
        """The payloads of one asset's points (uri, modality, label, positions, metadata)."""
        return _answer(lambda: tool_get_asset(cfg, asset_id, collection))

    @server.tool(structured_output=False)
    def list_collections() -> str:
        """The collections of the store and the aliases that point to them."""
        return _answer(lambda: tool_list_collections(cfg))

    return server


def serve(cfg: McpJobConfig) -> None:
    """Check the configuration, then serve on stdio until the client closes it."""
    from pipelines.search import validate_query_job

    validate_query_job(cfg)
    if not 1 <= cfg.max_top_k <= 1000:
        raise ConfigError("max_top_k", f"must be in 1..1000, got {cfg.max_top_k}")
    if not 1 <= cfg.top_k <= cfg.max_top_k:
        raise ConfigError("top_k", f"must be in 1..max_top_k ({cfg.max_top_k}), got {cfg.top_k}")
    build_server(cfg).run("stdio")
