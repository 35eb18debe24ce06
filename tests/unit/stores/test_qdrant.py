"""QdrantStore against qdrant-client's embedded local mode (on disk and in memory)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from pipelines.config.schema import EmbeddingConfig, QdrantConfig, SegmentationConfig
from pipelines.config.validate import validate_qdrant
from pipelines.core.errors import ConfigError, InfrastructureError, RecordError
from pipelines.core.ids import fingerprint, point_id
from pipelines.core.rows import dead_letter_row
from pipelines.stores.qdrant import QdrantStore, is_transient

DIM = 8


def _rows(n_assets: int, segments: int = 3, dim: int = DIM, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for a in range(n_assets):
        for s in range(segments):
            rows.append(
                {
                    "asset_id": f"doc{a}.pdf",
                    "uri": f"s3://corpus/doc{a}.pdf",
                    "modality": "document",
                    "content_version": f"etag:{a}",
                    "metadata": '{"team": "blue"}',
                    "label": "report" if a % 2 == 0 else None,
                    "payload": '{"size": 123}',
                    "segment_index": s,
                    "segment_count": segments,
                    "page": s,
                    "embedding_type": "IMAGE",
                    "vector": rng.standard_normal(dim).astype(np.float32),
                }
            )
    return rows


@pytest.fixture(params=["disk", "memory"])
def cfg(request: pytest.FixtureRequest, tmp_path: Path) -> QdrantConfig:
    path = str(tmp_path / "qdrant") if request.param == "disk" else ":memory:"
    return QdrantConfig(path=path, collection="test", batch_size=4)


EMB = EmbeddingConfig(dimension=DIM)
SEG = SegmentationConfig()


@pytest.fixture
def writer(cfg: QdrantConfig) -> Iterator[QdrantStore]:
    with QdrantStore(cfg, DIM, embedding=EMB, segmentation=SEG) as w:
        w.ensure_collection()
        yield w


# ---- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"url": "http://localhost:6333", "path": "/tmp/q"}, "qdrant.url"),
        ({"url": None, "path": None}, "qdrant.url"),
        ({"batch_size": 0}, "qdrant.batch_size"),
        ({"batch_size": 1001}, "qdrant.batch_size"),
        ({"collection": ""}, "qdrant.collection"),
        ({"timeout_s": 0}, "qdrant.timeout_s"),
    ],
)
def test_store_config_is_validated_before_any_work(kwargs: dict[str, Any], key: str) -> None:
    # One place checks configuration (validate_qdrant, run before any work); the store trusts it.
    with pytest.raises(ConfigError) as info:
        validate_qdrant(QdrantConfig(**kwargs))
    assert info.value.key == key


def test_fingerprints_follow_the_run_config() -> None:
    cfg = QdrantConfig(path=":memory:")
    seg = SegmentationConfig(pdf_dpi=200)
    writer = QdrantStore(cfg, DIM, embedding=EMB, segmentation=seg)
    assert writer.fingerprints["document"] == fingerprint(EMB, seg, "document")
    with pytest.warns(UserWarning, match="default parameters"):
        QdrantStore(cfg, DIM)
    with pytest.raises(ValueError, match="dimension"):
        QdrantStore(cfg, DIM, embedding=EmbeddingConfig(dimension=3072), segmentation=seg)


def test_writer_is_picklable_without_its_client(writer: QdrantStore) -> None:
    assert writer._client is not None
    clone = pickle.loads(pickle.dumps(writer))
    assert clone._client is None
    assert clone.cfg == writer.cfg and clone.fingerprints == writer.fingerprints


# ---- collection ------------------------------------------------------------------------------


def test_collection_is_created_with_size_and_cosine(writer: QdrantStore) -> None:
    params = writer.client.get_collection("test").config.params.vectors
    assert params.size == DIM
    assert params.distance == models.Distance.COSINE
    writer.ensure_collection()  # idempotent


@pytest.mark.parametrize("quantization", ["scalar", "binary", "none"])
def test_collection_settings_are_applied_at_creation_and_read_back(
    tmp_path: Path, quantization: str
) -> None:
    from pipelines.config.schema import CollectionSettingsConfig

    settings = CollectionSettingsConfig(
        vectors_on_disk=True,
        hnsw_on_disk=True,
        hnsw_m=32,
        hnsw_ef_construct=256,
        quantization=quantization,
        quantization_always_ram=True,
        shard_number=3,  # a server's: the embedded store has one shard
        replication_factor=2,
    )
    cfg = QdrantConfig(path=str(tmp_path / "q"), collection="big", collection_settings=settings)
    with QdrantStore(cfg, DIM, embedding=EMB, segmentation=SEG) as w:
        w.ensure_collection()
        assert w.search_params() is None  # embedded: exact search, no search parameters
    # Read back by another client from the folder: what the collection holds, not our config.
    client = QdrantClient(path=str(tmp_path / "q"))
    try:
        params = client.get_collection("big").config.params
    finally:
        client.close()
    vectors = params.vectors
    assert isinstance(vectors, models.VectorParams)
    assert vectors.size == DIM and vectors.on_disk is True
    assert vectors.hnsw_config is not None
    assert (vectors.hnsw_config.m, vectors.hnsw_config.ef_construct) == (32, 256)
    assert vectors.hnsw_config.on_disk is True
    q = vectors.quantization_config
    if quantization == "scalar":
        assert isinstance(q, models.ScalarQuantization)
        assert q.scalar.type == models.ScalarType.INT8 and q.scalar.always_ram is True
    elif quantization == "binary":
        assert isinstance(q, models.BinaryQuantization) and q.binary.always_ram is True
    else:
        assert q is None
    # Shards and replicas go to a server only.
    assert params.shard_number is None and params.replication_factor is None


def test_a_server_store_searches_quantized_collections_with_rescoring() -> None:
    from pipelines.config.schema import CollectionSettingsConfig

    settings = CollectionSettingsConfig(quantization="scalar", oversampling=3.0)
    cfg = QdrantConfig(url="http://127.0.0.1:1", path=None, collection_settings=settings)
    params = QdrantStore(cfg, DIM, embedding=EMB, segmentation=SEG).search_params()
    assert params.quantization.rescore is True and params.quantization.oversampling == 3.0
    layout = QdrantStore(
        QdrantConfig(
            url="http://127.0.0.1:1",
            path=None,
            collection_settings=CollectionSettingsConfig(shard_number=4, replication_factor=2),
        ),
        DIM,
        embedding=EMB,
        segmentation=SEG,
    )._layout()
    assert layout == {"shard_number": 4, "replication_factor": 2}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quantization", "pq"),
        ("hnsw_m", 500),
        ("hnsw_ef_construct", 1),
        ("oversampling", 0.5),
        ("shard_number", 0),
        ("replication_factor", 0),
    ],
)
def test_collection_settings_are_validated_naming_the_key(field: str, value: Any) -> None:
    from pipelines.config.schema import CollectionSettingsConfig

    cs = CollectionSettingsConfig(**{field: value})
    with pytest.raises(ConfigError) as info:
        validate_qdrant(QdrantConfig(collection_settings=cs))
    assert info.value.key == f"qdrant.collection_settings.{field}"


def test_size_mismatch_names_collection_and_both_sizes(tmp_path: Path) -> None:
    cfg = QdrantConfig(path=str(tmp_path / "q"), collection="test")
    with QdrantStore(cfg, DIM, fingerprints={}) as w:
        w.ensure_collection()
    with QdrantStore(cfg, 16, fingerprints={}) as other, pytest.raises(ConfigError) as info:
        other.ensure_collection()
    assert info.value.key == "qdrant.collection"
    assert f"{DIM}-d" in str(info.value) and "16-d" in str(info.value)


def test_embedded_store_allows_one_client(tmp_path: Path) -> None:
    cfg = QdrantConfig(path=str(tmp_path / "q"), collection="test")
    with QdrantStore(cfg, DIM, fingerprints={}) as first:
        first.ensure_collection()
        with pytest.raises(ConfigError) as info:
            QdrantStore(cfg, DIM, fingerprints={}).open()
        assert info.value.key == "qdrant.path"
    # Closing releases the lock.
    with QdrantStore(cfg, DIM, fingerprints={}) as again:
        assert again.count() == 0


# ---- writes ----------------------------------------------------------------------------------


def test_write_in_batches_and_rewrite_overwrites(writer: QdrantStore) -> None:
    rows = _rows(3)
    result = writer.write(rows)
    assert (result.written, result.batches, result.rejected) == (9, 3, [])
    assert writer.count() == 9
    again = writer.write(_rows(3, seed=1))
    assert again.written == 9
    assert writer.count() == 9  # same ids: overwritten, not duplicated
    point = writer.client.retrieve(
        "test", [point_id("doc0.pdf", 1, "IMAGE", "etag:0")], with_vectors=True
    )[0]
    stored = np.asarray(point.vector)
    expected = np.asarray(_rows(3, seed=1)[1]["vector"])
    assert np.allclose(stored, expected / np.linalg.norm(expected), atol=1e-5)


def test_embedded_collection_file_is_write_ahead_logged_and_synced(tmp_path: Path) -> None:
    import sqlite3

    cfg = QdrantConfig(path=str(tmp_path / "q"), collection="test", batch_size=4)
    with QdrantStore(cfg, DIM, embedding=EMB, segmentation=SEG) as store:
        store.ensure_collection()
        store.write(_rows(3))
        files = list((tmp_path / "q").rglob("storage.sqlite"))
        assert len(files) == 1
        # The point commits go to the write-ahead log, not into the file.
        assert (files[0].parent / "storage.sqlite-wal").stat().st_size > 0
        store.sync()
        with sqlite3.connect(files[0]) as other:
            # Every write is in the file after the sync, as another reader sees it.
            assert other.execute("SELECT count(*) FROM points").fetchone()[0] == 9
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with QdrantStore(cfg, DIM, embedding=EMB, segmentation=SEG) as again:
        assert again.count() == 9


def test_payload_fields(writer: QdrantStore) -> None:
    writer.write(_rows(1))
    point = writer.client.retrieve("test", [point_id("doc0.pdf", 2, "IMAGE", "etag:0")])[0]
    assert point.payload == {
        "asset_id": "doc0.pdf",
        "uri": "s3://corpus/doc0.pdf",
        "modality": "document",
        "segment_index": 2,
        "segment_count": 3,
        "embedding_type": "IMAGE",
        "page": 2,
        "content_version": "etag:0",
        "fingerprint": fingerprint(EMB, SEG, "document"),
        "label": "report",
        "metadata": {"team": "blue", "size": 123},
    }


def test_wrong_dimension_is_rejected_not_sent(writer: QdrantStore) -> None:
    rows = _rows(2)
    rows[1]["vector"] = rows[1]["vector"][:5]
    rows[2]["vector"] = None
    rows[3]["vector"] = np.full(DIM, np.nan)
    failed = dead_letter_row(
        {"asset_id": "bad.png", "modality": "image"}, RecordError("decode", "image_corrupt", "m")
    )
    result = writer.write([*rows, failed])
    assert result.written == 3
    codes = [(r["asset_id"], r["segment_index"], r["error_code"]) for r in result.rejected]
    assert codes == [
        ("doc0.pdf", 1, "dimension_mismatch"),
        ("doc0.pdf", 2, "missing_vector"),
        ("doc1.pdf", 0, "non_finite_vector"),
        ("bad.png", -1, "image_corrupt"),
    ]
    assert result.rejected[0]["error_stage"] == "write"
    assert "5 dimensions" in result.rejected[0]["error_message"]
    assert writer.count() == 3


def test_delete_and_count_by_asset(writer: QdrantStore) -> None:
    writer.write(_rows(3, segments=2))
    assert writer.count_by_asset(["doc0.pdf", "doc1.pdf", "missing"]) == {
        "doc0.pdf": 2,
        "doc1.pdf": 2,
        "missing": 0,
    }
    writer.delete_assets(["doc1.pdf", "missing"])
    assert writer.count() == 4
    assert writer.count_by_asset(["doc1.pdf", "doc2.pdf"]) == {"doc1.pdf": 0, "doc2.pdf": 2}
    assert writer.finish() == 4


def test_versions_sit_side_by_side_until_the_stale_one_is_deleted(writer: QdrantStore) -> None:
    old = _rows(2, segments=3)
    writer.write(old)
    new = [
        {**r, "content_version": "v2"} for r in _rows(2, segments=2) if r["asset_id"] == "doc0.pdf"
    ]
    writer.write(new)
    # The new version's points are beside the old ones (searchers keep the complete old version).
    assert writer.count_by_asset(["doc0.pdf", "doc1.pdf"]) == {"doc0.pdf": 5, "doc1.pdf": 3}
    writer.delete_versions([("doc0.pdf", "v2")], keep=True)  # the new one is complete
    assert writer.holdings(["doc0.pdf"])["doc0.pdf"].content_versions == {"v2"}
    assert writer.count_by_asset(["doc0.pdf", "doc1.pdf"]) == {"doc0.pdf": 2, "doc1.pdf": 3}
    writer.delete_versions([("doc1.pdf", "etag:1")])  # a failed version's partial points
    assert writer.count() == 2


def test_a_partial_assets_failed_segments_are_deleted_and_nothing_else(
    writer: QdrantStore,
) -> None:
    writer.write(_rows(2, segments=3))
    writer.write([{**r, "content_version": "v2"} for r in _rows(1, segments=3)])
    writer.delete_segments([("doc0.pdf", "etag:0", [1, 2]), ("doc1.pdf", "etag:9", [0])])
    payloads = [json.loads(p["payload_json"])
                for t in writer.scan(with_vectors=False) for p in t.to_pylist()]  # fmt: skip
    held = [(p["asset_id"], p["content_version"], p["segment_index"]) for p in payloads]
    assert sorted(held) == [
        ("doc0.pdf", "etag:0", 0),
        ("doc0.pdf", "v2", 0),
        ("doc0.pdf", "v2", 1),
        ("doc0.pdf", "v2", 2),
        ("doc1.pdf", "etag:1", 0),
        ("doc1.pdf", "etag:1", 1),
        ("doc1.pdf", "etag:1", 2),
    ]


# ---- read side -------------------------------------------------------------------------------


def test_holdings_report_points_versions_and_fingerprints(writer: QdrantStore) -> None:
    writer.write(_rows(3, segments=2))
    held = writer.holdings(["doc0.pdf", "doc2.pdf", "missing"])
    assert set(held) == {"doc0.pdf", "doc2.pdf"}
    assert held["doc2.pdf"].points == 2
    assert held["doc2.pdf"].content_versions == {"etag:2"}
    assert held["doc0.pdf"].fingerprints == {writer.fingerprints["document"]}


def test_scan_streams_every_point_with_vector_and_payload(writer: QdrantStore) -> None:
    rows = _rows(3, segments=3)
    writer.write(rows)
    tables = list(writer.scan(batch_size=4))
    assert [t.num_rows for t in tables] == [4, 4, 1]
    got = {(r["asset_id"], r["segment_index"]): r for t in tables for r in t.to_pylist()}
    assert len(got) == 9
    for row in rows:
        point = got[(row["asset_id"], row["segment_index"])]
        pid = point_id(row["asset_id"], row["segment_index"], "IMAGE", row["content_version"])
        assert point["point_id"] == pid
        unit = row["vector"] / np.linalg.norm(row["vector"])  # cosine collections normalise
        assert np.allclose(point["vector"], unit, atol=1e-6)
        assert json.loads(point["payload_json"])["content_version"] == row["content_version"]


def test_aliases_are_created_resolved_and_switched_atomically(writer: QdrantStore) -> None:
    writer.write(_rows(1))
    v2 = writer.for_collection("test_v2", dimension=4)
    v2.ensure_collection()
    assert writer.resolve_alias("docs") is None
    writer.create_alias("docs", "test")
    assert writer.resolve_alias("docs") == "test"
    writer.switch_alias("docs", "test_v2")
    assert writer.aliases() == {"docs": "test_v2"}
    assert v2.exists() and v2.count() == 0 and writer.count() == 3
    aliased = writer.for_collection("docs", dimension=4)
    assert aliased.exists()  # an alias is addressed like a collection


# ---- retries ---------------------------------------------------------------------------------


def _unexpected(status: int) -> UnexpectedResponse:
    return UnexpectedResponse(status, "reason", b"{}", httpx.Headers())


class FlakyClient:
    """A real in-memory client whose upserts first raise the given errors."""

    def __init__(self, errors: list[BaseException]) -> None:
        self._real = QdrantClient(location=":memory:")
        self.errors = list(errors)
        self.upsert_calls = 0

    def upsert(self, **kwargs: Any) -> Any:
        self.upsert_calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self._real.upsert(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _flaky_writer(
    errors: list[BaseException], max_attempts: int = 4
) -> tuple[QdrantStore, FlakyClient, list[float]]:
    client = FlakyClient(errors)
    sleeps: list[float] = []
    writer = QdrantStore(
        QdrantConfig(path=":memory:", collection="test", batch_size=100),
        DIM,
        embedding=EMB,
        segmentation=SEG,
        max_attempts=max_attempts,
        client_factory=lambda: client,
        sleep=sleeps.append,
    )
    writer.ensure_collection()
    return writer, client, sleeps


TRANSIENT: list[Callable[[], BaseException]] = [
    lambda: ResponseHandlingException(httpx.ConnectError("refused")),
    lambda: ResponseHandlingException(httpx.ReadTimeout("slow")),
    lambda: _unexpected(503),
    lambda: _unexpected(502),
    lambda: _unexpected(429),
    lambda: httpx.RemoteProtocolError("peer closed"),
    lambda: ConnectionResetError(),
]
PERMANENT: list[Callable[[], BaseException]] = [
    lambda: _unexpected(400),
    lambda: _unexpected(404),
    lambda: ValueError("bad point"),
    lambda: ResponseHandlingException(ValueError("unparseable response")),
]


@pytest.mark.parametrize("make", TRANSIENT)
def test_transient_errors_are_retried_then_succeed(make: Callable[[], BaseException]) -> None:
    writer, client, sleeps = _flaky_writer([make(), make()])
    result = writer.write(_rows(2))
    assert result.written == 6
    assert result.retries == 2
    assert client.upsert_calls == 3
    # Full jitter from the default base of 0.5 s: the first retry waits at most the base.
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0
    assert writer.count() == 6


@pytest.mark.parametrize("make", PERMANENT)
def test_permanent_errors_are_not_retried(make: Callable[[], BaseException]) -> None:
    err = make()
    writer, client, sleeps = _flaky_writer([err])
    with pytest.raises(type(err)):
        writer.write(_rows(1))
    assert client.upsert_calls == 1 and sleeps == []
    assert not is_transient(err)


def test_retries_are_bounded() -> None:
    flaky, client, sleeps = _flaky_writer([_unexpected(503)] * 10, max_attempts=3)
    with pytest.raises(InfrastructureError, match="after 3 attempts") as info:
        flaky.write(_rows(1))
    assert isinstance(info.value.__cause__, UnexpectedResponse)
    assert client.upsert_calls == 3 and len(sleeps) == 2
    assert flaky.count() == 0


def test_grpc_status_codes() -> None:
    import grpc

    class RpcError(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

    assert is_transient(RpcError(grpc.StatusCode.UNAVAILABLE))
    assert is_transient(RpcError(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert not is_transient(RpcError(grpc.StatusCode.INVALID_ARGUMENT))


# ---- server-only behaviour (a recording fake standing in for the server) -----------------------


class ServerLike(FlakyClient):
    """Records payload indexes and the optimizer threshold as a server would keep them."""

    def __init__(self) -> None:
        super().__init__([])
        self.indexes: dict[str, Any] = {}
        self.threshold = 20_000

    def create_payload_index(self, collection_name: str, field_name: str, **kw: Any) -> None:
        self.indexes[field_name] = kw["field_schema"]

    def update_collection(self, collection_name: str, optimizers_config: Any) -> None:
        self.threshold = optimizers_config.indexing_threshold

    def get_collection(self, collection_name: str) -> Any:
        info = self._real.get_collection(collection_name)
        info.config.optimizer_config.indexing_threshold = self.threshold
        return info


def test_server_load_indexes_payload_and_defers_hnsw() -> None:
    server = ServerLike()
    cfg = QdrantConfig(url="http://qdrant.invalid:6333", path=None, collection="test")
    writer = QdrantStore(cfg, DIM, embedding=EMB, segmentation=SEG, client_factory=lambda: server)
    writer.ensure_collection()
    assert set(server.indexes) == {"asset_id", "modality", "label", "content_version"}
    assert all(v == models.PayloadSchemaType.KEYWORD for v in server.indexes.values())
    assert server.threshold == 0
    writer.write(_rows(2))
    assert writer.finish() == 6
    assert server.threshold == 20_000


class UnwaitedServer(ServerLike):
    """Applies an upsert sent with wait=false only when an operation with wait=true follows
    (a server acknowledges from its write-ahead log and applies in order, per shard)."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: list[dict[str, Any]] = []

    def _drain(self) -> None:
        for kwargs in self.queued:
            self._real.upsert(**{**kwargs, "wait": True})
        self.queued.clear()

    def upsert(self, **kwargs: Any) -> Any:
        if not kwargs.get("wait", True):
            self.queued.append(kwargs)
            return None
        self._drain()
        return self._real.upsert(**kwargs)

    def delete(self, **kwargs: Any) -> Any:
        if kwargs.get("wait", True):
            self._drain()
        return self._real.delete(**kwargs)


@pytest.mark.parametrize("wait_writes", [False, True])
def test_unwaited_server_writes_are_all_applied_when_the_load_finishes(wait_writes: bool) -> None:
    server = UnwaitedServer()
    cfg = QdrantConfig(
        url="http://qdrant.invalid:6333",
        path=None,
        collection="test",
        batch_size=4,
        wait_writes=wait_writes,
    )
    writer = QdrantStore(cfg, DIM, embedding=EMB, segmentation=SEG, client_factory=lambda: server)
    writer.ensure_collection()
    assert writer.write(_rows(5)).written == 15
    # Without waiting, the writer has moved on before the server applied anything.
    assert server._real.count("test", exact=True).count == (15 if wait_writes else 0)
    assert writer.finish() == 15
    assert server.queued == []
