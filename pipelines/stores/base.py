"""The vector-store protocol: everything the runner and the jobs may ask of a store.

Write side (a load): :meth:`~VectorStore.ensure_collection` before the first write,
:meth:`~VectorStore.write` of embedded rows (every vector checked before it is sent; refused rows
come back as dead letters), :meth:`~VectorStore.delete_assets`, :meth:`~VectorStore.finish`
(restore what the load deferred, return the exact count), :meth:`~VectorStore.close`.

Read side (what later runs need to know): points and versions held per asset
(:meth:`~VectorStore.holdings`, :meth:`~VectorStore.count_by_asset`), a streaming scan of the stored
vectors (:meth:`~VectorStore.scan`, ``STORED_POINT`` tables), nearest-neighbour search, the
collection's own metadata (the parameters it was built with: :mod:`pipelines.collections`), and
aliases (resolve, create, switch atomically).

A store object is picklable and opens its client lazily, so the write stage can run it in Ray
actors; ``single_writer`` stores (Qdrant's embedded mode, which locks its folder) are written from
the driver only. To add a store, implement this protocol in ``pipelines/stores/<name>.py`` and
return it from :func:`pipelines.stores.open_store`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa


@dataclass
class WriteResult:
    """What one :meth:`VectorStore.write` call did.

    ``rejected`` holds the rows that were not written, as dead-letter rows: incoming dead letters
    unchanged, plus rows refused by the store's checks (``error_stage="write"``).
    """

    written: int = 0
    batches: int = 0
    retries: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AssetHolding:
    """What a collection holds of one asset."""

    points: int
    content_versions: frozenset[str] = frozenset()
    fingerprints: frozenset[str] = frozenset()


@dataclass
class QueryPart:
    """One part of a query: a dense vector, or keyword terms (``pipelines.keywords``) matched
    against the collection's keyword vector; ``weight`` counts in weighted fusion."""

    dense: Sequence[float] | None = None
    sparse: Any = None
    weight: float = 1.0


@dataclass
class SearchHit:
    """A point found by :meth:`VectorStore.query`; a grouped hit also lists the group's best
    points (``group``, best first) and the value it was grouped by (``group_key``)."""

    score: float
    payload: dict[str, Any]
    point_id: str = ""
    group: list[SearchHit] = field(default_factory=list)
    group_key: str = ""
    # Audio: where the query most likely starts in the track (set by the search).
    offset_s: float | None = None


@runtime_checkable
class VectorStore(Protocol):
    """A collection of vectors with payloads, addressed by name or alias."""

    collection: str

    @property
    def single_writer(self) -> bool:
        """True: only one process may write (the runner writes from the driver)."""
        ...

    # -- lifecycle
    def open(self) -> VectorStore: ...
    def close(self) -> None: ...
    def for_collection(self, name: str, dimension: int | None = None) -> VectorStore:
        """The same store (same client, same process) addressing another collection."""
        ...

    # -- write side
    def ensure_collection(self) -> None: ...
    def write(self, rows: Iterable[Mapping[str, Any]]) -> WriteResult: ...
    def delete_assets(self, asset_ids: Sequence[str]) -> None: ...
    def copy_asset(self, source: str, version: str | None, target: Mapping[str, Any]) -> int: ...
    def delete_versions(
        self, versions: Sequence[tuple[str, str | None]], keep: bool = False
    ) -> None: ...
    def delete_segments(
        self, segments: Sequence[tuple[str, str | None, Sequence[int]]]
    ) -> None: ...
    def finish(self) -> int: ...
    def sync(self) -> None:
        """Make every write so far durable (before the journal records it as done)."""
        ...

    def put_points(self, points: pa.Table) -> int:
        """Upsert ``STORED_POINT`` rows as they are (copies between collections)."""
        ...

    def check_writable(self) -> None:
        """Write and remove one probe point (preflight); raise when the store refuses it."""
        ...

    # -- read side
    def exists(self) -> bool: ...
    def count(self) -> int: ...
    def count_by_asset(self, asset_ids: Sequence[str]) -> dict[str, int]: ...
    def holdings(self, asset_ids: Sequence[str]) -> dict[str, AssetHolding]: ...
    def scan(self, batch_size: int = 256, with_vectors: bool = True) -> Iterator[pa.Table]: ...
    def payloads_of(self, asset_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The payloads of one asset's points (by segment)."""
        ...

    def search(
        self, vector: Sequence[float], limit: int = 10
    ) -> list[tuple[float, dict[str, Any]]]:
        """The nearest points: (score, payload), best first."""
        ...

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
        """A query of one or more parts (fused), filtered on payload fields, optionally grouped
        by a payload field: best first."""
        ...

    def keyword_vector(self) -> str | None:
        """The name of the collection's keyword (sparse) vector, or None."""
        ...

    def vectors_of(self, point_ids: Sequence[str]) -> dict[str, list[float]]: ...

    # -- collections: what a collection was built with lives in its own metadata
    def collection_names(self) -> list[str]: ...
    def metadata(self) -> dict[str, Any]: ...
    def set_metadata(self, metadata: Mapping[str, Any]) -> None: ...
    def delete_collection(self) -> None: ...

    # -- aliases
    def aliases(self) -> dict[str, str]: ...
    def resolve_alias(self, alias: str) -> str | None: ...
    def create_alias(self, alias: str, collection: str) -> None: ...
    def switch_alias(self, alias: str, collection: str) -> None: ...
