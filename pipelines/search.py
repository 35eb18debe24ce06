"""Queries against a collection: embed a query with the use case's query purpose, search Qdrant.

``python -m jobs.search`` (:func:`run_search`): a query of any of ``query.text``, ``query.image``,
``query.audio``, ``query.video``, each part embedded with the use case's ``*_RETRIEVAL`` purpose
and the parameters the collection records (dimension, detail level: ``pipelines.collections``);
in ``search.mode=sparse`` or ``hybrid`` the text is also (or only) matched by its keywords
against the collection's keyword vectors (``pipelines.keywords``). Several parts are fused by
the store (Qdrant's prefetch + reciprocal rank fusion, or weighted), filtered on payload fields,
optionally grouped by asset. Each hit says where in its asset it matched (page, seconds or
characters); an audio hit's ``offset_s`` is where the matching window starts in its track.
The lower-level helpers below (:func:`query_request`, :func:`embed_query`, :func:`search_vector`)
are what the demo and the evaluation use.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config.schema import (
    BedrockConfig,
    EmbeddingConfig,
    QdrantConfig,
    QueryConfig,
    QueryJobConfig,
    SearchJobConfig,
)
from pipelines.core.errors import ConfigError

AUDIO_FORMATS = {".mp3": "mp3", ".wav": "wav", ".ogg": "ogg", ".opus": "ogg"}
IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif", ".webp": "webp"}
VIDEO_FORMATS = {
    ".mp4": "mp4",
    ".mov": "mov",
    ".mkv": "mkv",
    ".webm": "webm",
    ".flv": "flv",
    ".mpeg": "mpeg",
    ".mpg": "mpg",
    ".wmv": "wmv",
    ".3gp": "3gp",
}


@dataclass
class Hit:
    """One search result."""

    score: float
    payload: dict[str, Any]

    def describe(self) -> str:
        p = self.payload
        where = ""
        if p.get("page") is not None:
            where = f" page {p['page']}"
        elif p.get("start_s") is not None:
            where = f" {p['start_s']:.0f}-{p['end_s']:.0f}s"
        elif p.get("char_start") is not None:
            where = f" chars {p['char_start']}-{p['char_end']}"
        return f"{self.score:.3f}  {p.get('asset_id')}{where} [{p.get('embedding_type')}]"


def query_request(
    emb: EmbeddingConfig,
    *,
    text: str | None = None,
    path: str | os.PathLike[str] | None = None,
    purpose: str | None = None,
    detail_level: str | None = None,
) -> Any:
    """The EmbeddingRequest for a text query or a media file query (format from its suffix)."""
    from pipelines.bedrock.request import EmbeddingRequest

    purpose = purpose or emb.query_purpose
    if (text is None) == (path is None):
        raise ValueError("give exactly one of text or path")
    if text is not None:
        return EmbeddingRequest.for_text(
            value=text,
            purpose=purpose,
            dimension=emb.dimension,
            truncation_mode=emb.text_truncation_mode,
        )
    assert path is not None
    p = Path(path)
    data = p.read_bytes()
    ext = p.suffix.lower()
    if ext in IMAGE_FORMATS:
        return EmbeddingRequest.for_image(
            data=data,
            format=IMAGE_FORMATS[ext],
            detail_level=detail_level or emb.image_detail_level,
            purpose=purpose,
            dimension=emb.dimension,
        )
    if ext in AUDIO_FORMATS:
        return EmbeddingRequest.for_audio(
            data=data, format=AUDIO_FORMATS[ext], purpose=purpose, dimension=emb.dimension
        )
    if ext in VIDEO_FORMATS:
        return EmbeddingRequest.for_video(
            data=data,
            format=VIDEO_FORMATS[ext],
            embedding_mode=emb.video_embedding_mode,
            purpose=purpose,
            dimension=emb.dimension,
        )
    raise ValueError(f"cannot query with a {ext or 'suffix-less'} file: {path}")


def embed_query(bedrock: BedrockConfig, emb: EmbeddingConfig, request: Any) -> list[float]:
    """Embed one query (with retries for throttles and transient errors)."""
    from pipelines.bedrock.client import NovaEmbeddingsClient

    client = NovaEmbeddingsClient.from_config(bedrock, emb.model_id)
    result = client.embed_with_retry(
        request,
        max_attempts=bedrock.max_attempts,
        base_backoff_s=bedrock.base_backoff_s,
        max_backoff_s=bedrock.max_backoff_s,
    )
    return list(result.embeddings[0].vector)


def open_qdrant(cfg: QdrantConfig) -> Any:
    from qdrant_client import QdrantClient

    from pipelines.config.validate import check_qdrant_transport

    check_qdrant_transport(cfg)  # no API key in clear to another host
    if cfg.url:
        return QdrantClient(
            url=cfg.url,
            api_key=os.environ.get("QDRANT_API_KEY"),
            prefer_grpc=cfg.prefer_grpc,
            timeout=int(cfg.timeout_s),
        )
    return QdrantClient(path=cfg.path)


def search_vector(
    client: Any, collection: str, vector: list[float], top_k: int = 5, query_filter: Any = None
) -> list[Hit]:
    """Nearest points by cosine similarity."""
    res = client.query_points(
        collection_name=collection,
        query=vector,
        limit=top_k,
        with_payload=True,
        query_filter=query_filter,
    )
    return [Hit(float(p.score), dict(p.payload or {})) for p in res.points]


# -- jobs.search ---------------------------------------------------------------------------------

MEDIA_PARTS = ("image", "audio", "video")
MODES = ("dense", "sparse", "hybrid")
FUSIONS = ("rrf", "weighted")
FORMATS = ("table", "json")
_SUFFIXES = {
    **dict.fromkeys(IMAGE_FORMATS, "image"),
    **dict.fromkeys(AUDIO_FORMATS, "audio"),
    **dict.fromkeys(VIDEO_FORMATS, "video"),
}


def part_of_file(path: str) -> str:
    """Which query part a media file is (image, audio or video), from its suffix."""
    kind = _SUFFIXES.get(Path(path).suffix.lower())
    if kind is None:
        raise ValueError(f"cannot query with a {Path(path).suffix or 'suffix-less'} file: {path}")
    return kind


def group_field(group_by: str | None) -> str | None:
    """The payload field ``group_by`` names (``asset`` is ``asset_id``)."""
    if group_by is None:
        return None
    return "asset_id" if group_by == "asset" else group_by


def flat_filter(where: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``filter.metadata.sku=X`` arrives nested (``{"metadata": {"sku": "X"}}``): Qdrant's
    dotted keys (``{"metadata.sku": "X"}``)."""
    out: dict[str, Any] = {}
    for key, value in where.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_filter(value, f"{name}."))
        else:
            out[name] = value
    return out


def validate_query_job(cfg: QueryJobConfig) -> None:
    """The keys ``jobs.search`` and ``jobs.evaluate`` share; raises ConfigError naming one."""
    from pipelines.config.validate import validate_bedrock, validate_qdrant

    validate_qdrant(cfg.qdrant)
    validate_bedrock(cfg.bedrock)
    if cfg.search.mode not in MODES:
        raise ConfigError("search.mode", f"{cfg.search.mode!r} is not one of {list(MODES)}")
    if cfg.search.fusion not in FUSIONS:
        raise ConfigError("search.fusion", f"{cfg.search.fusion!r} is not one of {list(FUSIONS)}")
    if not 1 <= cfg.search.candidates <= 10_000:
        raise ConfigError("search.candidates", f"must be in 1..10000, got {cfg.search.candidates}")
    if not 1 <= cfg.search.group_size <= 100:
        raise ConfigError("search.group_size", f"must be in 1..100, got {cfg.search.group_size}")
    for name, weight in dataclasses.asdict(cfg.search.weights).items():
        if not weight >= 0:
            raise ConfigError(f"search.weights.{name}", f"must be >= 0, got {weight}")
    for key, value in flat_filter(cfg.filter).items():
        if value is None or (isinstance(value, list | tuple) and not value):
            raise ConfigError(f"filter.{key}", "needs a value")


def validate_search(cfg: SearchJobConfig) -> None:
    """Every check of ``jobs.search``, before any call."""
    validate_query_job(cfg)
    q = cfg.query
    if not any((q.text, q.image, q.audio, q.video)):
        raise ConfigError(
            "query", "give at least one of query.text, query.image, query.audio, query.video"
        )
    for part in MEDIA_PARTS:
        path = getattr(q, part)
        if path is None:
            continue
        if not Path(path).is_file():
            raise ConfigError(f"query.{part}", f"no such file: {path}")
        try:
            kind = part_of_file(path)
        except ValueError as exc:
            raise ConfigError(f"query.{part}", str(exc)) from exc
        if kind != part:
            raise ConfigError(f"query.{part}", f"{path} is a {kind} file, not {part}")
    if cfg.search.mode != "dense" and not q.text:
        raise ConfigError("search.mode", f"{cfg.search.mode} matches keywords: give query.text")
    if not 1 <= cfg.top_k <= 1000:
        raise ConfigError("top_k", f"must be in 1..1000, got {cfg.top_k}")
    if cfg.format not in FORMATS:
        raise ConfigError("format", f"{cfg.format!r} is not one of {list(FORMATS)}")
    if cfg.group_by is not None and not cfg.group_by:
        raise ConfigError("group_by", "must name a payload field (or asset), or be null")


@dataclass
class Target:
    """The collection a query job reads, and the embedding parameters its vectors were made
    with (the collection's record; the query purpose stays the job's)."""

    store: Any
    physical: str
    embedding: EmbeddingConfig
    keywords: str | None


def open_target(cfg: QueryJobConfig) -> Target:
    """Open the store on ``qdrant.collection`` (alias or name); ConfigError when it does not
    exist or a keyword mode meets a collection without keyword vectors."""
    from pipelines.collections import Recorded
    from pipelines.stores import open_store

    store = open_store(cfg.qdrant, cfg.embedding, cfg.segmentation)
    store.open()
    try:
        name = cfg.qdrant.collection
        physical = store.resolve_alias(name) or name
        if physical not in store.collection_names():
            raise ConfigError("qdrant.collection", f"no collection or alias named {name!r}")
        phys = store.for_collection(physical)
        held = Recorded.of(phys.metadata())
        emb = cfg.embedding
        if held is not None:
            emb = dataclasses.replace(held.embedding, query_purpose=cfg.embedding.query_purpose)
        keywords = phys.keyword_vector()
        if cfg.search.mode != "dense" and keywords is None:
            raise ConfigError(
                "search.mode",
                f"collection {physical!r} has no keyword vectors (it was made without "
                "keywords.enabled=true): use search.mode=dense, or backfill a collection with them",
            )
        return Target(store.for_collection(name, emb.dimension), physical, emb, keywords)
    except BaseException:
        store.close()
        raise


def query_parts(
    cfg: QueryJobConfig,
    emb: EmbeddingConfig,
    text: str | None,
    files: Mapping[str, str],
    embedder: Any,
) -> tuple[list[Any], int]:
    """The store's query parts for a text and media files (``{"image": path, ...}``): a dense
    part per item (the text's only when the mode is dense or hybrid), the text's keyword part in
    sparse and hybrid mode. ``embedder(request)`` returns a vector. Returns the parts and the
    calls made."""
    from pipelines.keywords import encode_query
    from pipelines.stores import QueryPart

    w = cfg.search.weights
    parts: list[Any] = []
    calls = 0
    if text:
        if cfg.search.mode in ("dense", "hybrid"):
            parts.append(QueryPart(dense=embedder(query_request(emb, text=text)), weight=w.text))
            calls += 1
        if cfg.search.mode in ("sparse", "hybrid"):
            terms = encode_query(text)
            if terms:
                parts.append(QueryPart(sparse=terms, weight=w.keywords))
    for part, path in files.items():
        parts.append(
            QueryPart(dense=embedder(query_request(emb, path=path)), weight=getattr(w, part))
        )
        calls += 1
    return parts, calls


def bedrock_embedder(cfg: QueryJobConfig, emb: EmbeddingConfig) -> Any:
    """``request -> vector`` through one client (retries as the backfill's), with dummy
    credentials when every endpoint is on this machine and none are set."""
    from pipelines.bedrock.client import NovaEmbeddingsClient
    from pipelines.core.credentials import apply_to_environment, resolve_credentials

    credentials = resolve_credentials(cfg.bedrock)
    if credentials.dummy:
        apply_to_environment(credentials)
    client = NovaEmbeddingsClient.from_config(cfg.bedrock, emb.model_id)

    def embed(request: Any) -> list[float]:
        result = client.embed_with_retry(
            request,
            max_attempts=cfg.bedrock.max_attempts,
            base_backoff_s=cfg.bedrock.base_backoff_s,
            max_backoff_s=cfg.bedrock.max_backoff_s,
        )
        return list(result.embeddings[0].vector)

    return embed


def position(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Where in its asset a point is: page, start and end seconds, or character range."""
    for keys in (("page",), ("start_s", "end_s"), ("char_start", "char_end")):
        if payload.get(keys[0]) is not None:
            return {k: payload.get(k) for k in keys}
    return {}


def hit_record(hit: Any) -> dict[str, Any]:
    """One hit as the job prints it (json): score, asset, segment, position, uri; an audio
    hit's ``offset_s``; a grouped hit's best ``segments``."""
    p = hit.payload
    out: dict[str, Any] = {
        "score": round(float(hit.score), 6),
        "asset_id": p.get("asset_id"),
        "segment_index": p.get("segment_index"),
        "position": position(p),
        "uri": p.get("uri"),
        "modality": p.get("modality"),
        "embedding_type": p.get("embedding_type"),
        "label": p.get("label"),
    }
    if p.get("modality") == "audio" and p.get("start_s") is not None:
        out["offset_s"] = round(float(getattr(hit, "offset_s", None) or p["start_s"]), 3)
    if hit.group:
        out["group"] = hit.group_key
        out["segments"] = [
            {
                "score": round(float(h.score), 6),
                "segment_index": h.payload.get("segment_index"),
                "position": position(h.payload),
            }
            for h in hit.group
        ]
    return out


@dataclass
class SearchResult:
    """What :func:`run_search` found: hits as records (see :func:`hit_record`), and the calls."""

    hits: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0
    collection: str = ""


def run_search(cfg: SearchJobConfig, embedder: Any = None) -> SearchResult:
    """Embed the query's parts and search the collection (see the module docstring)."""
    validate_search(cfg)
    target = open_target(cfg)
    try:
        files = query_files(cfg.query)
        needs_calls = bool(files) or cfg.search.mode != "sparse"
        embed = embedder or (bedrock_embedder(cfg, target.embedding) if needs_calls else None)
        parts, calls = query_parts(cfg, target.embedding, cfg.query.text, files, embed)
        if not parts:
            return SearchResult([], calls, target.physical)
        hits = target.store.query(
            parts,
            limit=cfg.top_k,
            where=flat_filter(cfg.filter),
            fusion=cfg.search.fusion,
            group_by=group_field(cfg.group_by),
            group_size=cfg.search.group_size,
            candidates=max(cfg.search.candidates, cfg.top_k),
        )
        if len(parts) == 1 and parts[0].dense is not None:
            refine_offsets(target.store, parts[0], hits)
        return SearchResult([hit_record(h) for h in hits], calls, target.physical)
    finally:
        target.store.close()


def refine_offsets(store: Any, part: Any, hits: Sequence[Any]) -> None:
    """Set ``offset_s`` on audio hits: where the excerpt most likely starts in the track.

    Windows overlap (``audio_window_s`` apart by a hop), so the best window's start is at most
    half a hop from the truth only when the best window is the one that overlaps the excerpt
    most; similar windows around it blur that. The score of the best window and of its two
    neighbours (one query of the asset's windows, no Bedrock call) place the peak by parabolic
    interpolation, clamped to half a hop either side; a window at the track's edge uses the
    asset's lowest window score for its missing neighbour.
    """
    profiles: dict[str, dict[float, float]] = {}
    for hit in hits:
        if hit.payload.get("modality") != "audio" or hit.payload.get("start_s") is None:
            continue
        asset = str(hit.payload.get("asset_id"))
        if asset not in profiles:
            windows = store.query([part], limit=1000, where={"asset_id": asset})
            profiles[asset] = {
                float(w.payload["start_s"]): float(w.score)
                for w in windows
                if w.payload.get("start_s") is not None
            }
        hit.offset_s = peak_offset(profiles[asset], float(hit.payload["start_s"]))


def peak_offset(profile: Mapping[float, float], start: float) -> float:
    """The interpolated peak near window ``start`` of a ``{window start: score}`` profile."""
    starts = sorted(profile)
    if len(starts) < 2 or start not in profile:
        return start
    i = starts.index(start)
    hop = min(b - a for a, b in itertools.pairwise(starts))
    floor = min(profile.values())
    before = profile[starts[i - 1]] if i > 0 and start - starts[i - 1] <= hop * 1.01 else floor
    after = (
        profile[starts[i + 1]]
        if i + 1 < len(starts) and starts[i + 1] - start <= hop * 1.01
        else floor
    )
    best = profile[start]
    curve = before - 2 * best + after
    if curve >= 0:  # not a peak: keep the window's start
        return start
    shift = 0.5 * (before - after) / curve
    return start + hop * max(-0.5, min(0.5, shift))


def _where(record: Mapping[str, Any]) -> str:
    pos = record.get("position") or {}
    if "page" in pos:
        return f"page {pos['page']}"
    if "start_s" in pos:
        return f"{pos['start_s']:.1f}-{pos['end_s']:.1f}s"
    if "char_start" in pos:
        return f"chars {pos['char_start']}-{pos['char_end']}"
    return ""


def format_table(result: SearchResult) -> str:
    """The hits for people: rank, score, asset, segment, position, uri."""
    lines = [f"{'#':>3}  {'score':>8}  {'asset_id':<24} {'seg':>4}  {'position':<18} uri"]
    for i, r in enumerate(result.hits, start=1):
        lines.append(
            f"{i:>3}  {r['score']:>8.4f}  {r['asset_id']!s:<24} "
            f"{r['segment_index']!s:>4}  {_where(r):<18} {r.get('uri') or ''}"
        )
        for seg in r.get("segments", [])[1:]:
            lines.append(
                f"{'':>3}  {seg['score']:>8.4f}  {'':<24} {seg['segment_index']!s:>4}  "
                f"{_where(seg):<18}"
            )
    if not result.hits:
        lines.append("(no hits)")
    return "\n".join(lines)


def print_result(cfg: SearchJobConfig, result: SearchResult) -> None:
    if cfg.format == "json":
        import json

        sys.stdout.write(json.dumps(result.hits, default=str) + "\n")
        return
    print(format_table(result))
    print(
        f"({len(result.hits)} hits from {result.collection!r}, {result.calls} Bedrock "
        f"call{'s' if result.calls != 1 else ''})",
        file=sys.stderr,
    )


def query_files(query: QueryConfig) -> dict[str, str]:
    """The media parts of a query config that are set."""
    return {p: getattr(query, p) for p in MEDIA_PARTS if getattr(query, p)}
