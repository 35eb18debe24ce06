"""Queries against a collection: embed a query with the use case's query purpose, search Qdrant."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.config.schema import BedrockConfig, EmbeddingConfig, QdrantConfig

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
