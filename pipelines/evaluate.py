"""Retrieval quality of a collection on a query set, and the checks of a collection's vectors.

The evaluation core that migrations (:mod:`pipelines.migrate`) and a standalone evaluation job
share:

- a **query set**: a Parquet of queries (:func:`load_queries`: ``text`` or ``uri``, and the
  ``asset_ids`` each should find), or one sampled from a manifest (:func:`sample_queries`: each
  asset's own content, its first segment as the decoder cuts it, must find the asset);
- :func:`embed_queries`: one real call per query, with the query purpose of the parameters given;
- :func:`evaluate`: recall@k, MRR and nDCG over distinct assets (a query's hits are points; an
  asset counts once, at its best rank); :func:`score_ranked` and :func:`breakdown` measure ranked
  lists however they were found (``jobs.evaluate`` ranks with the search's query parts, per
  modality and per query kind: :func:`run_evaluation`);
- :func:`check_vectors`: every stored vector's size, norm and finiteness, streamed.

Queries are embedded one at a time in the driver (a query set is small: tens to a few thousand);
they are paced by the client's retries, not by the backfill's shared rate budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config.schema import BedrockConfig, EmbeddingConfig, SegmentationConfig
from pipelines.core.errors import ConfigError
from pipelines.stores import VectorStore


@dataclass
class Query:
    """One query and the asset ids it should find. Exactly one of ``text``, ``uri`` (a media
    file) or ``asset`` (a manifest row whose own content is the query) is set."""

    query_id: str
    expected: list[str]
    text: str | None = None
    uri: str | None = None
    asset: dict[str, Any] | None = None
    # What kind of query it is ("excerpt", "re-shoot", ...; the query set's ``kind`` column).
    kind: str | None = None

    @property
    def modality(self) -> str:
        """The query's own modality: text, or the media file's (image, audio, video)."""
        if self.text is not None:
            return "text"
        if self.uri is not None:
            from pipelines.search import part_of_file

            try:
                return part_of_file(self.uri)
            except ValueError:
                return "unknown"
        return str((self.asset or {}).get("modality") or "unknown")


@dataclass
class Metrics:
    """Retrieval quality of one collection on one query set."""

    k: int
    queries: int = 0
    recall_at_k: float = 0.0
    mrr: float = 0.0
    ndcg: float = 0.0
    # Queries that found none of their assets within k (ids, at most 20).
    missed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "queries": self.queries,
            f"recall_at_{self.k}": round(self.recall_at_k, 4),
            "mrr": round(self.mrr, 4),
            f"ndcg_at_{self.k}": round(self.ndcg, 4),
            "missed": self.missed,
        }


# -- query sets ----------------------------------------------------------------------------------


def load_queries(path: str, key: str = "validation.queries") -> list[Query]:
    """A query set from Parquet: ``text`` or ``uri`` per row, ``asset_ids`` (a list of strings,
    or one id as a string), optional ``query_id`` and ``kind``. A bad file fails naming the row
    (and ``key``, the setting that named the file)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ConfigError(key, f"cannot read {path!r}: {exc}") from exc
    if "asset_ids" not in table.column_names:
        raise ConfigError(key, f"{path!r} has no asset_ids column (the assets each query finds)")
    if "text" not in table.column_names and "uri" not in table.column_names:
        raise ConfigError(key, f"{path!r} needs a text or a uri column (the query)")
    out: list[Query] = []
    for i, row in enumerate(table.to_pylist()):
        expected = row["asset_ids"]
        expected = [expected] if isinstance(expected, str) else list(expected or [])
        text, uri = row.get("text"), row.get("uri")
        if not expected or (text is None) == (uri is None):
            raise ConfigError(
                key, f"{path!r} row {i}: needs asset_ids and exactly one of text or uri"
            )
        kind = row.get("kind")
        out.append(
            Query(
                str(row.get("query_id") or i),
                [str(a) for a in expected],
                text,
                uri,
                kind=str(kind) if kind is not None else None,
            )
        )
    return out


def sample_manifest_queries(
    uri: str, s3_endpoint_url: str | None, n: int, modalities: Sequence[str]
) -> list[Query]:
    """``n`` assets spread evenly over the manifest rows the use case takes; each one's own
    content is a query that must find it. The manifest is read in batches, twice (counted, then
    picked): memory is bounded by a batch."""
    from pipelines.core.manifest import iter_manifest

    wanted = pa.array(list(modalities))
    total = 0
    for _, table in iter_manifest(uri, s3_endpoint_url):
        total += int(pc.sum(pc.is_in(table.column("modality"), wanted)).as_py() or 0)
    if n <= 0 or total == 0:
        return []
    k = min(n, total)
    picks = sorted({int(i * total / k) for i in range(k)})
    rows: list[dict[str, Any]] = []
    seen = 0
    for _, table in iter_manifest(uri, s3_endpoint_url):
        table = table.filter(pc.is_in(table.column("modality"), wanted))
        local = [p - seen for p in picks if seen <= p < seen + table.num_rows]
        if local:
            rows.extend(table.take(pa.array(local, pa.int64())).to_pylist())
        seen += table.num_rows
    return [Query(str(r["asset_id"]), [str(r["asset_id"])], asset=r) for r in rows]


# -- embedding -----------------------------------------------------------------------------------


def query_request(
    q: Query, emb: EmbeddingConfig, seg: SegmentationConfig, s3_endpoint_url: str | None
) -> Any:
    """The request for one query with ``emb``'s query purpose; None when an asset query's
    content cannot be decoded."""
    from pipelines.bedrock.from_rows import request_from_segment
    from pipelines.search import query_request as file_or_text_request

    if q.asset is None:
        return file_or_text_request(emb, text=q.text, path=q.uri)
    from pipelines.core.incremental import content_versions
    from pipelines.core.rows import ASSET
    from pipelines.stages.decode import decode_asset

    asset = content_versions(ASSET.table([q.asset]), s3_endpoint_url).to_pylist()[0]
    segments = decode_asset(asset, seg, emb, s3_endpoint_url)
    try:
        for row in segments:
            if row.get("error_code") is None:
                return request_from_segment(row, emb, purpose=emb.query_purpose)
        return None
    finally:
        close = getattr(segments, "close", None)
        if close is not None:
            close()


def embed_queries(
    queries: Sequence[Query],
    emb: EmbeddingConfig,
    seg: SegmentationConfig,
    bedrock: BedrockConfig,
) -> tuple[list[list[float] | None], int]:
    """One vector per query (None when its content could not be decoded or embedded), and the
    calls made."""
    from pipelines.bedrock.client import NovaEmbeddingsClient

    client = NovaEmbeddingsClient.from_config(bedrock, emb.model_id)
    vectors: list[list[float] | None] = []
    calls = 0
    for q in queries:
        request = query_request(q, emb, seg, bedrock.s3_endpoint_url)
        if request is None:
            vectors.append(None)
            continue
        calls += 1
        result = client.embed_with_retry(
            request,
            max_attempts=bedrock.max_attempts,
            base_backoff_s=bedrock.base_backoff_s,
            max_backoff_s=bedrock.max_backoff_s,
        )
        vectors.append(list(result.embeddings[0].vector))
    return vectors, calls


def truncate(vector: Sequence[float], dimension: int) -> list[float]:
    """The normalised prefix of ``vector`` (Matryoshka)."""
    v = np.asarray(vector, dtype=np.float64)[:dimension]
    n = float(np.linalg.norm(v))
    return (v / n if n > 0 else v).tolist()


# -- measuring -----------------------------------------------------------------------------------


def ranked_assets(store: VectorStore, vector: Sequence[float], k: int) -> list[str]:
    """The first ``k`` distinct assets of the nearest points (a point per segment: an asset with
    many segments would otherwise fill the list)."""
    limit = k * 4
    while True:
        hits = store.search(vector, limit)
        seen: list[str] = []
        for _, payload in hits:
            asset = str(payload.get("asset_id"))
            if asset not in seen:
                seen.append(asset)
        if len(seen) >= k or len(hits) < limit:
            return seen[:k]
        limit *= 4


def evaluate(
    store: VectorStore,
    queries: Sequence[Query],
    vectors: Sequence[Sequence[float] | None],
    k: int,
) -> Metrics:
    """recall@k, MRR and nDCG (within the first k distinct assets) of ``store`` on the queries;
    a query without a vector counts as finding nothing."""
    ranked = [ranked_assets(store, vector, k) if vector is not None else [] for vector in vectors]
    return score_ranked(queries, ranked, k)


def score_ranked(queries: Sequence[Query], ranked: Sequence[Sequence[str]], k: int) -> Metrics:
    """recall@k, MRR and nDCG@k of ranked asset lists (one per query, best first; relevance is
    binary: an expected asset is relevant). MRR counts the first expected asset within k."""
    out = Metrics(k=k, queries=len(queries))
    if not queries:
        return out
    recall = rr = ndcg = 0.0
    for q, assets in zip(queries, ranked, strict=True):
        top = list(dict.fromkeys(assets))[:k]
        expected = set(q.expected)
        found = [i for i, a in enumerate(top) if a in expected]
        recall += len(found) / len(expected)
        rr += 1.0 / (found[0] + 1) if found else 0.0
        ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(expected), k)))
        ndcg += sum(1.0 / np.log2(i + 2) for i in found) / ideal
        if not found and len(out.missed) < 20:
            out.missed.append(q.query_id)
    out.recall_at_k = recall / len(queries)
    out.mrr = rr / len(queries)
    out.ndcg = float(ndcg / len(queries))
    return out


def breakdown(
    queries: Sequence[Query],
    ranked: Sequence[Sequence[str]],
    k: int,
    key: Callable[[Query], str],
) -> dict[str, Metrics]:
    """:func:`score_ranked` of each group of queries (``key``: e.g. the query's modality)."""
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        groups.setdefault(key(q), []).append(i)
    return {
        name: score_ranked([queries[i] for i in idx], [ranked[i] for i in idx], k)
        for name, idx in sorted(groups.items())
    }


@dataclass
class VectorCheck:
    """What :func:`check_vectors` found."""

    points: int = 0
    wrong_size: int = 0
    non_finite: int = 0
    bad_norm: int = 0
    # A few offending point ids.
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.wrong_size or self.non_finite or self.bad_norm)

    def as_dict(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "wrong_size": self.wrong_size,
            "non_finite": self.non_finite,
            "bad_norm": self.bad_norm,
            "examples": self.examples,
            "ok": self.ok,
        }


def check_vectors(
    store: VectorStore,
    dimension: int,
    norm_tolerance: float,
    progress: Callable[[int], None] | None = None,
) -> VectorCheck:
    """Every stored vector: ``dimension`` values, all finite, L2 norm within ``norm_tolerance``
    of 1 (the store is scanned in batches, never held whole)."""
    out = VectorCheck()
    for table in store.scan(batch_size=512):
        ids = table.column("point_id").to_pylist()
        for point, vector in zip(ids, table.column("vector").to_pylist(), strict=True):
            out.points += 1
            v = np.asarray(vector if vector is not None else [], dtype=np.float64)
            bad = None
            if v.shape[0] != dimension:
                out.wrong_size += 1
                bad = point
            elif not np.isfinite(v).all():
                out.non_finite += 1
                bad = point
            elif abs(float(np.linalg.norm(v)) - 1.0) > norm_tolerance:
                out.bad_norm += 1
                bad = point
            if bad is not None and len(out.examples) < 10:
                out.examples.append(bad)
        if progress is not None:
            progress(out.points)
    return out
