"""The Qdrant store: the :class:`~pipelines.stores.base.VectorStore` protocol for embedded and
server mode.

Writes are batched and idempotent.

Follows Qdrant's bulk-load guidance: the collection and its payload indexes exist before the
load, every vector's dimension is checked before it is sent, points go in batches
(``qdrant.batch_size``, 64-256 recommended) with ``wait=True`` (on a server,
``qdrant.wait_writes=false`` sends them without waiting and :meth:`QdrantStore.finish` waits
once), HNSW indexing is deferred during the
load on a server and restored after, and the load ends with an exact count.

Point ids are :func:`pipelines.core.ids.point_id`, so retrying a batch or re-running a job
overwrites points instead of duplicating them; this is what makes retries of a timed-out upsert
safe.

Embedded mode (``qdrant.path``) is qdrant-client's local store: it holds an exclusive lock on its
folder (a second client, even in the same process, fails) and is not safe for concurrent writers,
so the pipeline funnels every embedded-mode write through **one** ``QdrantStore`` in one process
(``single_writer``: the runner runs the write stage in the driver). The local store keeps each
collection in a SQLite file and commits every point on its own; the store switches those files
to write-ahead logging without a sync per commit (:meth:`QdrantStore._fast_local_storage`:
about a quarter of the CPU and of the wall time per point), and :meth:`QdrantStore.sync` makes
what was written durable before the journal records it.
``qdrant.path=":memory:"`` is an in-process store for tests: each writer instance has its own.

Errors: configuration problems raise :class:`ConfigError` in the constructor or in
:meth:`QdrantStore.ensure_collection`; transient failures (connection errors, timeouts, HTTP 5xx,
429 and 408, gRPC UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED / ABORTED), recognised by
exception type and status code only, are retried by the project's retry helper
(:mod:`pipelines.core.retry`: full-jitter exponential backoff, at least the server's
``Retry-After``) and then raise :class:`InfrastructureError`; other errors propagate unchanged.
Points the store refuses (no vector, wrong dimension, NaN) come back as dead-letter rows with
codes from :mod:`pipelines.core.codes`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from pipelines.config.schema import (
    EmbeddingConfig,
    KeywordsConfig,
    QdrantConfig,
    SegmentationConfig,
)
from pipelines.core import codes
from pipelines.core.errors import ConfigError, InfrastructureError, RecordError
from pipelines.core.ids import build_payload, fingerprint, point_id
from pipelines.core.retry import GIVE_UP, Decision, Failure, RetryPolicy, retry_call
from pipelines.core.rows import POSITION_COLUMNS, dead_letter_row, is_dead_letter
from pipelines.modalities import Registry, current
from pipelines.stores.base import WriteResult
from pipelines.stores.qdrant_read import ID_CHUNK, QdrantReadSide, asset_filter, split_vectors

log = logging.getLogger(__name__)

T = TypeVar("T")
# The asset id of the preflight's probe point (written and removed before a run's first write).
PROBE_ASSET = "__preflight__"

PAYLOAD_INDEXES = ("asset_id", "modality", "label", "content_version")
# Qdrant's default indexing_threshold, used to restore indexing when the collection was already
# deferred (0) before this load began (e.g. a previous load crashed).
DEFAULT_INDEXING_THRESHOLD = 20_000
_TRANSIENT_HTTP_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_GRPC_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED")


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is a failure worth retrying (judged by type and status code only)."""
    import httpx
    from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, ResourceExhaustedResponse):
        return True
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in _TRANSIENT_HTTP_STATUS or (
            exc.status_code is not None and exc.status_code >= 500
        )
    if isinstance(exc, ResponseHandlingException):
        # The REST client wraps transport errors (and response parsing errors) in this type.
        return is_transient(exc.source)
    if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
        return True
    try:
        import grpc
    except ImportError:  # pragma: no cover - grpc ships with qdrant-client
        return False
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        code = exc.code()
        return code is not None and code.name in _TRANSIENT_GRPC_CODES
    return False


def _retry_after_s(exc: BaseException) -> float:
    value = getattr(exc, "retry_after_s", None)
    return float(value) if isinstance(value, int | float) else 0.0


def _classify(exc: BaseException) -> Decision:
    """Retry transient failures, waiting at least what the server asked for (``Retry-After``)."""
    if not is_transient(exc):
        return GIVE_UP
    return Decision(True, min_delay_s=_retry_after_s(exc))


def _version_conditions(asset_id: str, version: str | None) -> tuple[Any, Any]:
    """The conditions "this asset" and "at this content version" (None: without one)."""
    from qdrant_client import models

    same_asset = models.FieldCondition(key="asset_id", match=models.MatchValue(value=asset_id))
    if version is None:
        return same_asset, models.IsEmptyCondition(
            is_empty=models.PayloadField(key="content_version")
        )
    return same_asset, models.FieldCondition(
        key="content_version", match=models.MatchValue(value=version)
    )


class QdrantStore(QdrantReadSide):
    """A Qdrant collection (``collection``, default ``cfg.collection``): see the module docstring.

    Picklable: the client is created in :meth:`open` (or on first use) and dropped when pickled, so
    a configured writer can be shipped to a Ray worker. Use it as a context manager, or call
    :meth:`open` / :meth:`close`.

    ``fingerprints`` maps modality to :func:`pipelines.core.ids.fingerprint`; when omitted they are
    computed from ``embedding`` and ``segmentation`` (defaults when those are omitted too).
    ``client_factory`` replaces the real client (tests, instrumentation).

    ``keywords`` (enabled): the collection is created with a named sparse vector under Qdrant's
    IDF modifier, and every written text segment carries its keyword vector
    (:mod:`pipelines.keywords`) beside the dense one.
    """

    def __init__(
        self,
        cfg: QdrantConfig,
        dimension: int,
        *,
        embedding: EmbeddingConfig | None = None,
        segmentation: SegmentationConfig | None = None,
        fingerprints: Mapping[str, str] | None = None,
        collection: str | None = None,
        keywords: KeywordsConfig | None = None,
        modalities: Registry | None = None,
        max_attempts: int = 6,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        client_factory: Callable[[], Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # The configuration was checked before any work (pipelines/config/validate.py,
        # validate_qdrant); what is left here are programming errors.
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.cfg = cfg
        self.collection: str = collection or cfg.collection
        self.dimension = int(dimension)
        if embedding is not None and embedding.dimension != self.dimension:
            raise ValueError(
                f"store dimension {self.dimension} != embedding.dimension {embedding.dimension}"
            )
        if fingerprints is None and (embedding is None or segmentation is None):
            # The payload's fingerprint must describe the run's real parameters, or the planner
            # cannot tell stale vectors from fresh ones.
            warnings.warn(
                "QdrantStore without embedding= and segmentation= (or fingerprints=): payload "
                "fingerprints describe the default parameters, not this run's",
                stacklevel=2,
            )
        # The driver's registry travels with the store (modalities registered at run time too).
        self.modalities = modalities or current()
        emb = embedding or EmbeddingConfig(dimension=self.dimension)
        seg = segmentation or SegmentationConfig()
        self.fingerprints: dict[str, str] = (
            dict(fingerprints)
            if fingerprints is not None
            else {m: fingerprint(emb, seg, m, self.modalities) for m in self.modalities}
        )
        self.positions = {name: m.position_fields for name, m in self.modalities.items()}
        self.keywords: str | None = keywords.vector_name if keywords and keywords.enabled else None
        self.max_attempts = max_attempts
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self._client_factory = client_factory
        self._sleep = sleep
        self._client: Any = None
        self._deferred_threshold: int | None = None
        # Embedded collections whose SQLite file is set for bulk writes (shared by the stores
        # for_collection makes: they share the client).
        self._tuned: set[str] = set()
        self.retries = 0

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def embedded(self) -> bool:
        """True for qdrant-client's local mode (``qdrant.path``)."""
        return not self.cfg.url

    @property
    def single_writer(self) -> bool:
        """The embedded store locks its folder: one writer process (the driver)."""
        return self.embedded

    def for_collection(self, name: str, dimension: int | None = None) -> QdrantStore:
        """This store (sharing its open client) addressing collection ``name`` (of vectors of
        ``dimension``, default this store's)."""
        other = copy.copy(self)  # __getstate__ drops the client: share it explicitly
        other._client = self._client
        other.collection = name
        other.dimension = int(dimension or self.dimension)
        other._deferred_threshold = None
        return other

    def _make_client(self) -> Any:
        from qdrant_client import QdrantClient

        if self.cfg.url:
            return QdrantClient(
                url=self.cfg.url,
                api_key=os.environ.get("QDRANT_API_KEY") or None,
                prefer_grpc=self.cfg.prefer_grpc,
                timeout=max(1, round(self.cfg.timeout_s)),
            )
        if self.cfg.path == ":memory:":
            return QdrantClient(location=":memory:")
        try:
            return QdrantClient(path=self.cfg.path)
        except RuntimeError as exc:  # portalocker: the folder is locked by another client
            raise ConfigError(
                "qdrant.path",
                f"{self.cfg.path!r} is in use by another Qdrant client: the embedded store allows "
                "one client (one writer process); stop the other user or use a Qdrant server "
                f"({exc})",
            ) from exc

    def open(self) -> QdrantStore:
        """Create the client (idempotent)."""
        if self._client is None:
            self._client = self._client_factory() if self._client_factory else self._make_client()
        return self

    def close(self) -> None:
        """Close the client (releases the embedded store's lock)."""
        client, self._client = self._client, None
        self._tuned.clear()
        if client is not None:
            self._sync(client)
            client.close()

    # ---- embedded storage ------------------------------------------------------------------

    def _local_connections(self, client: Any, names: Iterable[str] | None = None) -> list[Any]:
        """The SQLite connections of the embedded store's collections (``names``: only those).

        qdrant-client's local mode keeps each collection in ``collection/<name>/storage.sqlite``
        behind ``QdrantLocal.collections[name].storage.storage``; that layout is not a public
        interface, so anything else found there gives no connection (and the defaults stay)."""
        import sqlite3

        collections = getattr(getattr(client, "_client", None), "collections", None)
        if not isinstance(collections, dict):
            return []
        out = []
        for name, coll in collections.items():
            if names is not None and name not in names:
                continue
            conn = getattr(getattr(coll, "storage", None), "storage", None)
            if isinstance(conn, sqlite3.Connection):
                out.append(conn)
        return out

    def _fast_local_storage(self) -> None:
        """Set the embedded collection's SQLite file for bulk writes, once per collection.

        The local store commits every point in its own transaction; with SQLite's default
        rollback journal and ``synchronous=FULL`` each commit creates, syncs and deletes a journal
        file. Write-ahead logging (persistent in the file) with ``synchronous=NORMAL`` appends to
        the log instead and syncs it at checkpoints: the file stays consistent after a crash of
        the process or of the machine, and a machine crash can lose only the commits since the
        last :meth:`sync` (measured by ``benchmarks/bench_writes.py``: CPU per point about a
        quarter, wall time about a fifth). Nothing to do on a server or in memory."""
        if not self.embedded or self.cfg.path == ":memory:" or self.collection in self._tuned:
            return
        conns = self._local_connections(self.client, [self.collection])
        for conn in conns:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        if conns:
            self._tuned.add(self.collection)
        else:
            log.debug(
                "embedded collection %r: SQLite storage not found; defaults kept", self.collection
            )

    def sync(self) -> None:
        """Make every write so far durable before it is recorded as done (the journal).

        Embedded: a checkpoint of each collection's write-ahead log (syncs the log, copies it
        into the file, syncs the file); a server acknowledges writes itself (``wait``, or
        :meth:`finish` for writes sent without waiting)."""
        if self._client is not None:
            self._sync(self._client)

    def _sync(self, client: Any) -> None:
        if not self.embedded or self.cfg.path == ":memory:":
            return
        for conn in self._local_connections(client):
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception as exc:  # the store's own commits are in; the sync is a barrier
                raise InfrastructureError(f"the embedded store could not sync: {exc}") from exc

    def __enter__(self) -> QdrantStore:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        state["_tuned"] = set()
        return state

    @property
    def client(self) -> Any:
        """The open qdrant-client (opened on first use)."""
        return self.open()._client

    # ---- retries ---------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, retrying transient errors (:func:`retry_call`); after the
        last attempt a transient failure raises :class:`InfrastructureError`."""

        def on_failure(failure: Failure) -> None:
            if failure.retry:
                self.retries += 1
                log.warning(
                    "qdrant %s: transient %s (attempt %d/%d), retrying in %.2fs",
                    what,
                    type(failure.error).__name__,
                    failure.attempt,
                    self.max_attempts,
                    failure.delay_s,
                )
            elif failure.exhausted:
                raise InfrastructureError(
                    f"qdrant {what} on {self.collection!r} failed after {failure.attempt} "
                    f"attempts: {type(failure.error).__name__}: {failure.error}"
                ) from failure.error

        return retry_call(
            lambda: fn(*args, **kwargs),
            _classify,
            RetryPolicy(self.max_attempts, base_s=self.base_backoff_s, cap_s=self.max_backoff_s),
            on_failure=on_failure,
            sleep=self._sleep,
        )

    # ---- collection ------------------------------------------------------------------------

    def _vector_params(self) -> Any:
        """The vectors' parameters with the collection's layout
        (``qdrant.collection_settings``). HNSW and quantization are given per vector: a server
        applies them the same as collection-wide ones, and the embedded store keeps them with
        the collection (it ignores them when searching), so they read back in both modes."""
        from qdrant_client import models

        cs = self.cfg.collection_settings
        quantization: Any = None
        if cs.quantization == "scalar":
            quantization = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(
                    type=models.ScalarType.INT8, always_ram=cs.quantization_always_ram
                )
            )
        elif cs.quantization == "binary":
            quantization = models.BinaryQuantization(
                binary=models.BinaryQuantizationConfig(always_ram=cs.quantization_always_ram)
            )
        return models.VectorParams(
            size=self.dimension,
            distance=models.Distance.COSINE,
            on_disk=cs.vectors_on_disk,
            hnsw_config=models.HnswConfigDiff(
                m=cs.hnsw_m, ef_construct=cs.hnsw_ef_construct, on_disk=cs.hnsw_on_disk
            ),
            quantization_config=quantization,
        )

    def search_params(self) -> Any:
        """Re-scoring of quantized candidates on a server (the embedded store searches exactly
        and warns about any search parameter)."""
        cs = self.cfg.collection_settings
        if cs.quantization == "none" or self.embedded:
            return None
        from qdrant_client import models

        return models.SearchParams(
            quantization=models.QuantizationSearchParams(
                rescore=cs.rescore, oversampling=cs.oversampling
            )
        )

    def _layout(self) -> dict[str, Any]:
        """Shards and replicas: a server's (the embedded store has one shard, no replica)."""
        cs = self.cfg.collection_settings
        if self.embedded:
            return {}
        out: dict[str, Any] = {}
        if cs.shard_number is not None:
            out["shard_number"] = cs.shard_number
        if cs.replication_factor is not None:
            out["replication_factor"] = cs.replication_factor
        return out

    def ensure_collection(self) -> None:
        """Create the collection and payload indexes if missing; check the vector size.

        Call once per load from the driver, before any :meth:`write` (on a server this also defers
        HNSW indexing until :meth:`finish`).
        """
        from qdrant_client import models
        from qdrant_client.http.exceptions import UnexpectedResponse

        name = self.collection
        client = self.client
        if not self._call("collection_exists", client.collection_exists, name):
            try:
                self._call(
                    "create_collection",
                    client.create_collection,
                    collection_name=name,
                    vectors_config=self._vector_params(),
                    sparse_vectors_config=self._sparse_config(),
                    on_disk_payload=self.cfg.on_disk_payload,
                    **self._layout(),
                )
            except UnexpectedResponse as exc:
                if exc.status_code != 409:  # 409: another writer created it first
                    raise
        info = self._call("get_collection", client.get_collection, name)
        self._check_vectors(info.config.params.vectors)
        self._check_sparse(info.config.params.sparse_vectors)
        if not self.embedded:
            # Local mode ignores payload indexes (and warns); a server needs them before the load.
            for key in PAYLOAD_INDEXES:
                self._call(
                    "create_payload_index",
                    client.create_payload_index,
                    collection_name=name,
                    field_name=key,
                    field_schema=models.PayloadSchemaType.KEYWORD,
                    wait=True,
                )
            if self.cfg.defer_indexing and self._deferred_threshold is None:
                current = info.config.optimizer_config.indexing_threshold
                self._deferred_threshold = current or DEFAULT_INDEXING_THRESHOLD
                self._call(
                    "update_collection",
                    client.update_collection,
                    collection_name=name,
                    optimizers_config=models.OptimizersConfigDiff(indexing_threshold=0),
                )

    def _check_vectors(self, vectors: Any) -> None:
        from qdrant_client import models

        key = "qdrant.collection"
        name = self.collection
        if not isinstance(vectors, models.VectorParams):
            raise ConfigError(
                key,
                f"collection {name!r} has named vectors {vectors!r}; expected one unnamed vector",
            )
        if vectors.size != self.dimension:
            raise ConfigError(
                key,
                f"collection {name!r} holds {vectors.size}-d vectors but this run writes "
                f"{self.dimension}-d vectors (embedding.dimension); use another collection or "
                "migrate",
            )
        if vectors.distance != models.Distance.COSINE:
            raise ConfigError(
                key, f"collection {name!r} uses {vectors.distance} distance; expected Cosine"
            )

    def _sparse_config(self) -> Any:
        """The keyword vector's config (IDF applied by Qdrant at query time), or None."""
        from qdrant_client import models

        if self.keywords is None:
            return None
        return {self.keywords: models.SparseVectorParams(modifier=models.Modifier.IDF)}

    def _check_sparse(self, sparse: Any) -> None:
        if self.keywords is not None and self.keywords not in (sparse or {}):
            raise ConfigError(
                "keywords.enabled",
                f"collection {self.collection!r} has no sparse vector {self.keywords!r} (it was "
                "made without keyword vectors); run with keywords.enabled=false, or migrate to a "
                "collection that has them",
            )

    def _point_vector(self, row: Mapping[str, Any], dense: list[float]) -> Any:
        """The point's vectors: the dense one, and the keyword vector of a text segment when the
        collection keeps them (a copy passes the stored one as ``keyword_vector``)."""
        if self.keywords is None:
            return dense
        from qdrant_client import models

        from pipelines.keywords import encode_document

        terms = row.get("keyword_vector")
        if terms is None:
            text = row.get("input_text")
            terms = encode_document(text) if text else None
        if not terms:
            return dense
        sparse = models.SparseVector(indices=list(terms.indices), values=list(terms.values))
        return {"": dense, self.keywords: sparse}

    def finish(self) -> int:
        """Wait until upserts sent without waiting are applied, restore indexing if it was
        deferred, and return the exact point count."""
        if not self.embedded and not self.cfg.wait_writes:
            # A filtered delete reaches every shard and, with wait=true, returns once each
            # shard has applied it, hence everything it took before (in order, per shard).
            self.delete_assets([PROBE_ASSET])
        if self._deferred_threshold is not None:
            from qdrant_client import models

            self._call(
                "update_collection",
                self.client.update_collection,
                collection_name=self.collection,
                optimizers_config=models.OptimizersConfigDiff(
                    indexing_threshold=self._deferred_threshold
                ),
            )
            self._deferred_threshold = None
        return self.count(exact=True)

    # ---- writes ----------------------------------------------------------------------------

    @staticmethod
    def _refused(row: Mapping[str, Any], error: RecordError) -> dict[str, Any]:
        """The dead-letter row of a point the store will not take."""
        error.at(
            segment_index=row.get("segment_index", -1), segment_count=row.get("segment_count", 0)
        )
        refused = dead_letter_row(row, error)
        # Keep the point's identity so that callers can tell which embedding was refused (an
        # AUDIO_VIDEO_SEPARATE segment has two).
        refused["embedding_type"] = row.get("embedding_type")
        return refused

    def _vector(self, row: Mapping[str, Any]) -> list[float]:
        """The row's vector as floats; raises :class:`RecordError` when it cannot be sent."""
        raw = row.get("vector")
        if raw is None:
            raise RecordError("write", codes.MISSING_VECTOR, "row has no vector")
        vec = np.asarray(raw, dtype=np.float32).ravel()
        if vec.shape[0] != self.dimension:
            raise RecordError(
                "write",
                codes.DIMENSION_MISMATCH,
                f"vector has {vec.shape[0]} dimensions, collection "
                f"{self.collection!r} expects {self.dimension}",
            )
        if not np.isfinite(vec).all():
            raise RecordError("write", codes.NON_FINITE_VECTOR, "vector contains NaN or inf")
        vector: list[float] = vec.tolist()
        return vector

    def write(self, rows: Iterable[Mapping[str, Any]]) -> WriteResult:
        """Upsert embedded rows (segment columns + ``embedding_type`` + ``vector``).

        Every vector is checked before anything is sent; rows that fail the check, and incoming
        dead-letter rows, come back in ``WriteResult.rejected``.
        """
        from qdrant_client import models

        result = WriteResult()
        points: list[Any] = []
        for row in rows:
            if is_dead_letter(row):
                result.rejected.append(dict(row))
                continue
            try:
                vector = self._vector(row)
                fp = self.fingerprints.get(str(row.get("modality")))
                if fp is None:
                    raise RecordError(
                        "write",
                        codes.MODALITY_UNKNOWN,
                        f"no fingerprint for {row.get('modality')!r}",
                    )
            except RecordError as error:
                result.rejected.append(self._refused(row, error))
                continue
            points.append(
                models.PointStruct(
                    id=point_id(
                        row["asset_id"],
                        row["segment_index"],
                        row["embedding_type"],
                        row.get("content_version"),
                    ),
                    vector=self._point_vector(row, vector),
                    payload=build_payload(
                        row, fp, self.positions.get(str(row["modality"]), POSITION_COLUMNS)
                    ),
                )
            )
        retries_before = self.retries
        client = self.client
        self._fast_local_storage()
        size = int(self.cfg.batch_size)
        for start in range(0, len(points), size):
            batch = points[start : start + size]
            self._call(
                "upsert",
                client.upsert,
                collection_name=self.collection,
                points=batch,
                wait=self.embedded or self.cfg.wait_writes,
            )
            result.written += len(batch)
            result.batches += 1
        result.retries = self.retries - retries_before
        return result

    def delete_versions(
        self, versions: Sequence[tuple[str, str | None]], keep: bool = False
    ) -> None:
        """Delete the points of these (asset id, content version) pairs; with ``keep``, delete
        every *other* version of each asset instead (a changed asset's stale points)."""
        from qdrant_client import models

        pairs = list(dict.fromkeys(versions))
        for start in range(0, len(pairs), 100):
            clauses: list[Any] = []
            for asset_id, version in pairs[start : start + 100]:
                same_asset, this_version = _version_conditions(asset_id, version)
                clauses.append(
                    models.Filter(must=[same_asset], must_not=[this_version])
                    if keep
                    else models.Filter(must=[same_asset, this_version])
                )
            self._delete_where(clauses)

    def delete_segments(self, segments: Sequence[tuple[str, str | None, Sequence[int]]]) -> None:
        """Delete the points of these (asset id, content version, segment indices): a partial
        asset's failed segments, which an earlier run of the same version may have written."""
        from qdrant_client import models

        items = list(segments)
        for start in range(0, len(items), 100):
            clauses: list[Any] = [
                models.Filter(
                    must=[
                        *_version_conditions(asset_id, version),
                        models.FieldCondition(
                            key="segment_index", match=models.MatchAny(any=list(indices))
                        ),
                    ]
                )
                for asset_id, version, indices in items[start : start + 100]
            ]
            self._delete_where(clauses)

    def _delete_where(self, clauses: list[Any]) -> None:
        """Delete the points matching any of ``clauses`` (filters), waiting until applied."""
        from qdrant_client import models

        self._call(
            "delete",
            self.client.delete,
            collection_name=self.collection,
            points_selector=models.FilterSelector(filter=models.Filter(should=clauses)),
            wait=True,
        )

    def check_writable(self) -> None:
        """Write and remove one probe point under a reserved asset id (preflight)."""
        modality = next(iter(self.fingerprints))
        probe = {
            "asset_id": PROBE_ASSET,
            "modality": modality,
            "segment_index": 0,
            "segment_count": 1,
            "embedding_type": "PROBE",
            "vector": [1.0] + [0.0] * (self.dimension - 1),
        }
        result = self.write([probe])
        if result.rejected:
            raise InfrastructureError(f"the store refused a probe point: {result.rejected[0]}")
        self.delete_assets([PROBE_ASSET])

    def copy_asset(self, source: str, version: str | None, target: Mapping[str, Any]) -> int:
        """Write the points of ``source`` (at ``version``) again as the asset row ``target``
        (identical content under another asset id): same vectors and segments, the target's
        identity and metadata. Returns the points written."""
        from qdrant_client import models

        must: list[Any] = [
            models.FieldCondition(key="asset_id", match=models.MatchValue(value=source))
        ]
        if version is not None:
            must.append(
                models.FieldCondition(key="content_version", match=models.MatchValue(value=version))
            )
        rows = []
        for record in self._scroll(models.Filter(must=must), with_vectors=True, payload=True):
            held = record.payload or {}
            dense, keywords = split_vectors(record.vector)
            row = {**held, **dict(target), "vector": dense, "keyword_vector": keywords}
            row.update(
                segment_index=held["segment_index"],
                segment_count=held["segment_count"],
                embedding_type=held["embedding_type"],
            )
            rows.append(row)
        return self.write(rows).written

    def put_points(self, points: pa.Table) -> int:
        """Upsert ``STORED_POINT`` rows as they are (id, vector, payload): copies between
        collections (adoption, Matryoshka truncation). Vectors are checked as in :meth:`write`;
        a point that fails the check raises (a copy must be whole). Returns the points written."""
        from qdrant_client import models

        structs = []
        for row in points.select(["point_id", "vector", "payload_json", "asset_id"]).to_pylist():
            try:
                vector = self._vector(row)
            except RecordError as error:
                raise InfrastructureError(
                    f"point {row['point_id']} of asset {row['asset_id']!r} cannot be copied "
                    f"into {self.collection!r}: {error}"
                ) from error
            payload = json.loads(row["payload_json"]) if row["payload_json"] else {}
            structs.append(models.PointStruct(id=row["point_id"], vector=vector, payload=payload))
        self._fast_local_storage()
        size = int(self.cfg.batch_size)
        for start in range(0, len(structs), size):
            self._call(
                "upsert",
                self.client.upsert,
                collection_name=self.collection,
                points=structs[start : start + size],
                wait=True,
            )
        return len(structs)

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Merge ``metadata`` into the collection's own metadata (top-level keys replaced)."""
        self._call(
            "update_collection",
            self.client.update_collection,
            collection_name=self.collection,
            metadata=dict(metadata),
        )

    def delete_collection(self) -> None:
        """Drop the collection (adoption drops the plain-named one once its copy is checked)."""
        self._call("delete_collection", self.client.delete_collection, self.collection)

    def delete_assets(self, asset_ids: Sequence[str]) -> None:
        """Delete every point of these assets (removed assets, or partial writes to redo)."""
        from qdrant_client import models

        ids = list(dict.fromkeys(asset_ids))
        for start in range(0, len(ids), ID_CHUNK):
            chunk = ids[start : start + ID_CHUNK]
            self._call(
                "delete",
                self.client.delete,
                collection_name=self.collection,
                points_selector=models.FilterSelector(filter=asset_filter(chunk)),
                wait=True,
            )
