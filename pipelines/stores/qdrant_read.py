"""The read side of the Qdrant store: counts, what each asset holds, a scan of the stored
vectors, and aliases. A mixin of :class:`~pipelines.stores.qdrant.QdrantStore`, which provides
the client, the collection and the retried call."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import pyarrow as pa

from pipelines.core.rows import STORED_POINT
from pipelines.stores.base import AssetHolding, QueryPart, SearchHit

T = TypeVar("T")
ID_CHUNK = 1000


class QdrantReadSide:
    """Reads of one collection (see :class:`~pipelines.stores.base.VectorStore`)."""

    collection: str

    @property
    def client(self) -> Any:
        raise NotImplementedError

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        raise NotImplementedError

    def search_params(self) -> Any:
        """Qdrant ``SearchParams`` for :meth:`search` (None: the collection's defaults)."""
        return None

    # ---- counts ----------------------------------------------------------------------------

    def count(self, exact: bool = True) -> int:
        """Points in the collection."""
        res = self._call("count", self.client.count, collection_name=self.collection, exact=exact)
        return int(res.count)

    def count_by_asset(self, asset_ids: Sequence[str]) -> dict[str, int]:
        """Points per asset id (0 for assets with none), by exact facet counts."""
        ids = list(dict.fromkeys(asset_ids))
        counts = dict.fromkeys(ids, 0)
        for start in range(0, len(ids), ID_CHUNK):
            chunk = ids[start : start + ID_CHUNK]
            res = self._call(
                "facet",
                self.client.facet,
                collection_name=self.collection,
                key="asset_id",
                facet_filter=asset_filter(chunk),
                limit=len(chunk),
                exact=True,
            )
            for hit in res.hits:
                counts[str(hit.value)] = int(hit.count)
        return counts

    # ---- read side -------------------------------------------------------------------------

    def exists(self) -> bool:
        """True when the collection (or an alias of that name) exists."""
        if self._call("collection_exists", self.client.collection_exists, self.collection):
            return True
        return self.resolve_alias(self.collection) is not None

    def holdings(self, asset_ids: Sequence[str]) -> dict[str, AssetHolding]:
        """Points, content versions and fingerprints held per asset (absent assets left out)."""
        ids = list(dict.fromkeys(asset_ids))
        points: dict[str, int] = {}
        versions: dict[str, set[str]] = {}
        prints: dict[str, set[str]] = {}
        for start in range(0, len(ids), ID_CHUNK):
            chunk = ids[start : start + ID_CHUNK]
            for record in self._scroll(
                asset_filter(chunk),
                with_vectors=False,
                payload=["asset_id", "content_version", "fingerprint"],
            ):
                payload = record.payload or {}
                asset = str(payload.get("asset_id"))
                points[asset] = points.get(asset, 0) + 1
                if payload.get("content_version") is not None:
                    versions.setdefault(asset, set()).add(str(payload["content_version"]))
                if payload.get("fingerprint") is not None:
                    prints.setdefault(asset, set()).add(str(payload["fingerprint"]))
        return {
            a: AssetHolding(n, frozenset(versions.get(a, ())), frozenset(prints.get(a, ())))
            for a, n in points.items()
        }

    def scan(self, batch_size: int = 256, with_vectors: bool = True) -> Iterator[pa.Table]:
        """Every point of the collection, ``batch_size`` at a time, as ``STORED_POINT`` tables."""
        rows: list[dict[str, Any]] = []
        for record in self._scroll(None, with_vectors=with_vectors, payload=True, page=batch_size):
            payload = record.payload or {}
            vector = split_vectors(record.vector)[0] if with_vectors else None
            rows.append(
                {
                    "point_id": str(record.id),
                    "asset_id": payload.get("asset_id"),
                    "segment_index": payload.get("segment_index"),
                    "embedding_type": payload.get("embedding_type"),
                    "vector": list(vector) if isinstance(vector, list) else None,
                    "payload_json": json.dumps(payload, sort_keys=True, default=str),
                }
            )
            if len(rows) >= batch_size:
                yield STORED_POINT.table(rows)
                rows = []
        if rows:
            yield STORED_POINT.table(rows)

    def payloads_of(self, asset_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The payloads of an asset's points (at most ``limit``), by segment then type."""
        from qdrant_client import models

        flt = models.Filter(
            must=[models.FieldCondition(key="asset_id", match=models.MatchValue(value=asset_id))]
        )
        found = []
        for record in self._scroll(flt, with_vectors=False, payload=True):
            found.append(dict(record.payload or {}))
            if len(found) >= limit:
                break
        return sorted(
            found,
            key=lambda p: (p.get("segment_index") or 0, str(p.get("embedding_type") or "")),
        )

    def _scroll(
        self, flt: Any, *, with_vectors: bool, payload: Any, page: int = 256
    ) -> Iterator[Any]:
        offset = None
        while True:
            records, offset = self._call(
                "scroll",
                self.client.scroll,
                collection_name=self.collection,
                scroll_filter=flt,
                limit=page,
                offset=offset,
                with_payload=payload,
                with_vectors=with_vectors,
            )
            yield from records
            if offset is None:
                return

    def search(
        self, vector: Sequence[float], limit: int = 10
    ) -> list[tuple[float, dict[str, Any]]]:
        """The ``limit`` nearest points to ``vector`` (cosine): (score, payload), best first.

        On a server, a quantized collection is searched with re-scoring by the original vectors
        over ``oversampling`` times the limit (``qdrant.collection_settings``); the embedded
        store searches exactly and takes no search parameters."""
        params = self.search_params()
        extra: dict[str, Any] = {} if params is None else {"search_params": params}
        res = self._call(
            "query_points",
            self.client.query_points,
            collection_name=self.collection,
            query=list(vector),
            limit=limit,
            with_payload=True,
            **extra,
        )
        return [(float(p.score), dict(p.payload or {})) for p in res.points]

    def vectors_of(self, point_ids: Sequence[str]) -> dict[str, list[float]]:
        """The stored vectors of these points (absent ones left out)."""
        out: dict[str, list[float]] = {}
        ids = list(point_ids)
        for start in range(0, len(ids), ID_CHUNK):
            records = self._call(
                "retrieve",
                self.client.retrieve,
                collection_name=self.collection,
                ids=ids[start : start + ID_CHUNK],
                with_payload=False,
                with_vectors=True,
            )
            for r in records:
                dense = split_vectors(r.vector)[0]
                if dense is not None:
                    out[str(r.id)] = dense
        return out

    def query(
        self,
        parts: Sequence[QueryPart],
        *,
        limit: int = 10,
        where: Mapping[str, Any] | None = None,
        fusion: str = "rrf",
        group_by: str | None = None,
        group_size: int = 3,
        candidates: int = 100,
    ) -> list[SearchHit]:
        """Points (or groups of points) nearest to a query of one or more parts, best first.

        One part is one Qdrant query. Several are fused by Qdrant's query API: one prefetch of
        ``candidates`` points per part, then reciprocal rank fusion (``fusion="rrf"``) or the
        same with each part's ``weight`` (``"weighted"``). ``where`` filters on payload fields
        (``{"label": "report", "metadata.sku": "SKU-1000"}``; a list matches any of its values).

        ``group_by`` (a payload field, e.g. ``asset_id``) returns each group once with its best
        ``group_size`` points (Qdrant's grouped query). With several parts, each part ranks the
        groups by their best point and the ranks are fused with the same formula: an asset whose
        photo matches the picture and whose description matches the words rises, although they
        are different points.
        """
        from qdrant_client import models

        if not parts:
            raise ValueError("a query needs at least one part")
        flt = payload_filter(where)
        weights = [p.weight for p in parts] if fusion == "weighted" else None
        if group_by is None:
            if len(parts) == 1:
                res = self._call(
                    "query_points",
                    self.client.query_points,
                    collection_name=self.collection,
                    **self._part_query(parts[0]),
                    query_filter=flt,
                    limit=limit,
                    with_payload=True,
                )
            else:
                fused: Any = (
                    models.RrfQuery(rrf=models.Rrf(weights=weights))
                    if weights is not None
                    else models.FusionQuery(fusion=models.Fusion.RRF)
                )
                res = self._call(
                    "query_points",
                    self.client.query_points,
                    collection_name=self.collection,
                    prefetch=[
                        models.Prefetch(**self._part_query(p), filter=flt, limit=candidates)
                        for p in parts
                    ],
                    query=fused,
                    limit=limit,
                    with_payload=True,
                )
            return [SearchHit(float(p.score), dict(p.payload or {}), str(p.id)) for p in res.points]
        ranked = [
            self._groups(p, flt, group_by, limit if len(parts) == 1 else candidates, group_size)
            for p in parts
        ]
        if len(parts) == 1:
            return ranked[0][:limit]
        return fuse_groups(ranked, weights, limit, group_size)

    def _groups(
        self, part: QueryPart, flt: Any, group_by: str, limit: int, group_size: int
    ) -> list[SearchHit]:
        res = self._call(
            "query_points_groups",
            self.client.query_points_groups,
            collection_name=self.collection,
            **self._part_query(part),
            query_filter=flt,
            group_by=group_by,
            limit=limit,
            group_size=group_size,
            with_payload=True,
        )
        out = []
        for g in res.groups:
            hits = [SearchHit(float(h.score), dict(h.payload or {}), str(h.id)) for h in g.hits]
            if hits:
                out.append(
                    SearchHit(hits[0].score, hits[0].payload, hits[0].point_id, hits, str(g.id))
                )
        return out

    def _part_query(self, part: QueryPart) -> dict[str, Any]:
        from qdrant_client import models

        if part.sparse is not None:
            name = self.keyword_vector()
            if name is None:
                raise ValueError(f"collection {self.collection!r} has no keyword vector")
            sparse = models.SparseVector(
                indices=list(part.sparse.indices), values=list(part.sparse.values)
            )
            return {"query": sparse, "using": name}
        assert part.dense is not None
        return {"query": [float(x) for x in part.dense]}

    def keyword_vector(self) -> str | None:
        """The name of the collection's keyword (sparse) vector, or None."""
        info = self._call("get_collection", self.client.get_collection, self.collection)
        sparse = info.config.params.sparse_vectors or {}
        return next(iter(sorted(sparse)), None)

    # ---- collections -----------------------------------------------------------------------

    def collection_names(self) -> list[str]:
        """Every collection of the store (physical names; aliases left out)."""
        res = self._call("get_collections", self.client.get_collections)
        return sorted(c.name for c in res.collections)

    def metadata(self) -> dict[str, Any]:
        """The collection's own metadata (what it was built with: ``pipelines.collections``);
        empty when it has none or does not exist."""
        if not self.exists():
            return {}
        info = self._call("get_collection", self.client.get_collection, self.collection)
        return dict(getattr(info.config, "metadata", None) or {})

    # ---- aliases ---------------------------------------------------------------------------

    def aliases(self) -> dict[str, str]:
        """Every alias of the store and the collection it points to."""
        res = self._call("get_aliases", self.client.get_aliases)
        return {a.alias_name: a.collection_name for a in res.aliases}

    def resolve_alias(self, alias: str) -> str | None:
        """The collection ``alias`` points to, or None."""
        return self.aliases().get(alias)

    def create_alias(self, alias: str, collection: str) -> None:
        """Point a new alias at ``collection`` (Qdrant refuses the name of a collection)."""
        from qdrant_client import models

        self._call(
            "update_collection_aliases",
            self.client.update_collection_aliases,
            change_aliases_operations=[
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
                )
            ],
        )

    def switch_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` in one atomic operation (delete + create)."""
        from qdrant_client import models

        ops: list[Any] = []
        if self.resolve_alias(alias) is not None:
            ops.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
            )
        ops.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
            )
        )
        self._call(
            "update_collection_aliases",
            self.client.update_collection_aliases,
            change_aliases_operations=ops,
        )


def split_vectors(stored: Any) -> tuple[list[float] | None, Any]:
    """A stored point's dense vector and keyword vector (None when absent): a collection with a
    keyword vector returns ``{"": dense, "keywords": sparse}``, one without it the dense list."""
    if isinstance(stored, dict):
        dense = stored.get("")
        sparse = next((v for k, v in stored.items() if k != ""), None)
        return (list(dense) if isinstance(dense, list) else None), sparse
    return (list(stored) if isinstance(stored, list) else None), None


def payload_filter(where: Mapping[str, Any] | None) -> Any:
    """A Qdrant filter requiring every ``field: value`` (a list: any of its values)."""
    from qdrant_client import models

    if not where:
        return None
    must: list[Any] = []
    for key, value in where.items():
        if isinstance(value, list | tuple):
            match: Any = models.MatchAny(any=list(value))
        else:
            match = models.MatchValue(value=value)
        must.append(models.FieldCondition(key=key, match=match))
    return models.Filter(must=must)


# Qdrant's reciprocal rank fusion constant (qdrant_client.hybrid.fusion), so that fused groups
# score like fused points.
RRF_K = 2


def fuse_groups(
    ranked: Sequence[Sequence[SearchHit]],
    weights: Sequence[float] | None,
    limit: int,
    group_size: int,
) -> list[SearchHit]:
    """Reciprocal rank fusion of groups ranked by several parts (Qdrant's formula: a group at
    0-based rank ``r`` of a part of weight ``w`` adds ``1 / ((r + 1) / w + k - 1)``). A fused
    group keeps its best points over all parts."""
    scores: dict[str, float] = {}
    members: dict[str, dict[str, SearchHit]] = {}
    first: dict[str, SearchHit] = {}
    for i, hits in enumerate(ranked):
        w = weights[i] if weights is not None else 1.0
        for rank, group in enumerate(hits):
            key = group.group_key
            add = 1.0 / ((rank + 1.0) / w + RRF_K - 1.0) if w > 0 else 0.0
            scores[key] = scores.get(key, 0.0) + add
            first.setdefault(key, group)
            for h in group.group:
                held = members.setdefault(key, {})
                if h.point_id not in held or held[h.point_id].score < h.score:
                    held[h.point_id] = h
    out = []
    for key in sorted(scores, key=lambda k: -scores[k])[:limit]:
        hits = sorted(members[key].values(), key=lambda h: -h.score)[:group_size]
        best = first[key]
        out.append(SearchHit(scores[key], best.payload, best.point_id, hits, key))
    return out


def asset_filter(asset_ids: list[str]) -> Any:
    from qdrant_client import models

    return models.Filter(
        must=[models.FieldCondition(key="asset_id", match=models.MatchAny(any=asset_ids))]
    )
