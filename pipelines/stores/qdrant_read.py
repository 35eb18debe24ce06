"""The read side of the Qdrant store: counts, what each asset holds, a scan of the stored
vectors, and aliases. A mixin of :class:`~pipelines.stores.qdrant.QdrantStore`, which provides
the client, the collection and the retried call."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pyarrow as pa

from pipelines.core.rows import STORED_POINT
from pipelines.stores.base import AssetHolding

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
            vector = record.vector if with_vectors else None
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
                if isinstance(r.vector, list):
                    out[str(r.id)] = list(r.vector)
        return out

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


def asset_filter(asset_ids: list[str]) -> Any:
    from qdrant_client import models

    return models.Filter(
        must=[models.FieldCondition(key="asset_id", match=models.MatchAny(any=asset_ids))]
    )
