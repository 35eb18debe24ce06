"""The arrangements the next jobs need, built from toy stages and run by the one runner on Ray.

backfill (manifest, decode, embed, store), estimate (manifest, decode, count; no Bedrock),
migration from stored vectors (store scan, transform, store) and batch inference (manifest,
decode, batch-embed, store). Each test reads the results back (from the store, or the counts the
driver received), so a runner that drops, duplicates or mis-wires batches fails.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import numpy as np
import pyarrow as pa
import pytest

from pipelines.config.schema import EmbeddingConfig, QdrantConfig, RayConfig, SegmentationConfig
from pipelines.core.errors import RecordError
from pipelines.core.rows import (
    ASSET,
    EMBEDDED,
    SEGMENT,
    STORED_POINT,
    MissingColumnsError,
    RowType,
    dead_letter_row,
    segment_row,
)
from pipelines.core.runner import BlocksSource, Pipeline, StoreScanSource, run_pipeline
from pipelines.core.stage import Resources, Stage
from pipelines.stages.write import WriteStage
from pipelines.stores.qdrant import QdrantStore

pytestmark = pytest.mark.integration

DIM = 8
RAY = RayConfig(num_cpus=2)
TEXTS = {
    "a": "alpha beta gamma",
    "b": "delta epsilon",
    "c": "zeta",
    "d": "",  # no words: a dead letter from the decode stage
    "e": "eta theta iota kappa lambda",
}


def _manifest() -> pa.Table:
    rows = [
        {"asset_id": k, "uri": None, "modality": "text", "text": v, "content_version": "v1"}
        for k, v in TEXTS.items()
    ]
    return ASSET.table(rows)


def _vector(word: str, dim: int = DIM) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big")
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32).tolist()


class WordsDecode(Stage):
    """Toy decode: one segment per word of the inline text (CPU tasks)."""

    name = "decode"
    takes = ASSET
    gives = SEGMENT
    resources = Resources(num_cpus=0.5, batch_size=1)

    def process(self, batch: pa.Table) -> Iterator[pa.Table]:
        for asset in batch.to_pylist():
            words = (asset["text"] or "").split()
            if not words:
                yield SEGMENT.table(
                    [dead_letter_row(asset, RecordError("decode", "empty_text", "no words"))]
                )
                continue
            yield SEGMENT.table(
                [
                    segment_row(
                        asset,
                        segment_index=i,
                        segment_count=len(words),
                        input_kind="text",
                        input_text=w,
                    )
                    for i, w in enumerate(words)
                ]
            )


class HashEmbed(Stage):
    """Toy embed: a deterministic vector per segment, in a pool of actors (set up per actor)."""

    name = "embed"
    takes = SEGMENT
    gives = EMBEDDED
    resources = Resources(num_cpus=0.25, concurrency=2, actor=True, batch_size=4)

    def setup(self) -> None:
        self.ready = True  # a client would be made here

    def process(self, batch: pa.Table) -> pa.Table:
        assert self.ready
        out = []
        for row in batch.to_pylist():
            if row["error_code"] is None:
                row.update(
                    embedding_type="TEXT", vector=_vector(row["input_text"]), bedrock_calls=1
                )
            out.append(row)
        return EMBEDDED.table(out)


class BatchEmbed(Stage):
    """Toy batch inference: a whole batch becomes one job's records, read back by record id."""

    name = "batch_embed"
    takes = SEGMENT
    gives = EMBEDDED
    resources = Resources(num_cpus=0.25, concurrency=1, actor=True, batch_size=64)

    def process(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        records = {
            f"r{i}": {"modelInput": r["input_text"]}
            for i, r in enumerate(rows)
            if r["error_code"] is None
        }
        # The "service" answers in another order; results are matched by record id only.
        outputs = {rid: _vector(rec["modelInput"]) for rid, rec in reversed(records.items())}
        out = []
        for i, row in enumerate(rows):
            if f"r{i}" in outputs:
                row.update(embedding_type="TEXT", vector=outputs[f"r{i}"], bedrock_calls=0)
            out.append(row)
        return EMBEDDED.table(out)


class UsageRow(TypedDict):
    asset_id: Annotated[str, pa.string()]
    segments: Annotated[int, pa.int64()]
    chars: Annotated[int, pa.int64()]
    dead: Annotated[int, pa.int64()]


USAGE = RowType(UsageRow)


class CountUsage(Stage):
    """Estimate: segments and characters per asset, no model call."""

    name = "count"
    takes = SEGMENT
    gives = USAGE
    resources = Resources(num_cpus=0.25)

    def process(self, batch: pa.Table) -> pa.Table:
        rows = [
            {
                "asset_id": r["asset_id"],
                "segments": 0 if r["error_code"] else 1,
                "chars": len(r["input_text"] or ""),
                "dead": 1 if r["error_code"] else 0,
            }
            for r in batch.to_pylist()
        ]
        return USAGE.table(rows)


class Truncate(Stage):
    """Migration transform: stored points to embedded rows with Matryoshka-truncated vectors."""

    name = "truncate"
    takes = STORED_POINT
    gives = EMBEDDED
    resources = Resources(num_cpus=0.25)

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def process(self, batch: pa.Table) -> pa.Table:
        out = []
        for p in batch.to_pylist():
            payload = json.loads(p["payload_json"])
            v = np.asarray(p["vector"][: self.dim], dtype=np.float32)
            row = segment_row(
                {k: payload.get(k) for k in ("asset_id", "uri", "modality", "content_version")},
                segment_index=payload["segment_index"],
                segment_count=payload["segment_count"],
            )
            row.update(embedding_type=p["embedding_type"], vector=(v / np.linalg.norm(v)).tolist())
            out.append(row)
        return EMBEDDED.table(out)


def _store(collection: str = "toy", dim: int = DIM) -> QdrantStore:
    return QdrantStore(
        QdrantConfig(path=":memory:", collection=collection),
        dim,
        embedding=EmbeddingConfig(dimension=dim),
        segmentation=SegmentationConfig(),
    )


def _stored_vectors(store: QdrantStore) -> dict[tuple[str, int], list[float]]:
    out = {}
    for table in store.scan(batch_size=7):
        for p in table.to_pylist():
            out[(p["asset_id"], p["segment_index"])] = p["vector"]
    return out


def _run(pipeline: Pipeline) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    got: list[dict[str, Any]] = []
    figures = run_pipeline(pipeline, RAY, lambda b: got.extend(b.to_pylist()), batch_size=5)
    return got, figures


def _expected_words() -> dict[tuple[str, int], str]:
    return {(k, i): w for k, v in TEXTS.items() for i, w in enumerate(v.split())}


def test_backfill_arrangement_writes_every_segment_and_acknowledges_every_row() -> None:
    store = _store().open()
    store.ensure_collection()
    pipeline = Pipeline(
        "backfill",
        BlocksSource(ASSET, _manifest(), cut=lambda t, cpus: [t.slice(i, 1) for i in range(5)]),
        [WordsDecode(), HashEmbed(), WriteStage(store, batch_size=5)],
    )
    assert pipeline.stages[-1].resources.on_driver  # the embedded store is written by the driver
    acks, _ = _run(pipeline)

    words = _expected_words()
    assert sorted((a["asset_id"], a["segment_index"]) for a in acks if not a["error_code"]) == (
        sorted(words)
    )
    assert [a["error_code"] for a in acks if a["error_code"]] == ["empty_text"]
    assert all(a["vector"] is None for a in acks)  # acknowledgements carry no vectors
    stored = _stored_vectors(store)
    assert set(stored) == set(words)
    for key, word in words.items():
        assert np.allclose(stored[key], _vector(word), atol=1e-6)
    store.close()


def test_estimate_arrangement_counts_without_a_model() -> None:
    pipeline = Pipeline("estimate", BlocksSource(ASSET, _manifest()), [WordsDecode(), CountUsage()])
    usage, figures = _run(pipeline)
    assert set(figures) == {"decode", "count"}
    assert sum(u["segments"] for u in usage) == len(_expected_words())
    assert sum(u["chars"] for u in usage) == sum(len(w) for w in _expected_words().values())
    assert sum(u["dead"] for u in usage) == 1


def test_migration_arrangement_rewrites_stored_vectors_into_a_new_collection() -> None:
    old = _store("docs_v1").open()
    old.ensure_collection()
    _run(
        Pipeline(
            "backfill",
            BlocksSource(ASSET, _manifest()),
            [WordsDecode(), HashEmbed(), WriteStage(old, batch_size=5)],
        )
    )
    # The same embedded store (one client per folder), another collection of 4-d vectors.
    new = old.for_collection("docs_v2", dimension=4)
    new.ensure_collection()
    source = StoreScanSource(old, batch_size=3, window_blocks=2)  # several windows
    acks, _ = _run(Pipeline("migrate", source, [Truncate(4), WriteStage(new, batch_size=5)]))

    assert len(acks) == old.count() == new.count() == len(_expected_words())
    migrated, original = _stored_vectors(new), _stored_vectors(old)
    for key, vector in migrated.items():
        prefix = np.asarray(original[key][:4])
        assert np.allclose(vector, prefix / np.linalg.norm(prefix), atol=1e-5)
    new.create_alias("docs", "docs_v1")
    new.switch_alias("docs", "docs_v2")
    assert new.resolve_alias("docs") == "docs_v2"
    old.close()


def test_batch_inference_arrangement_matches_records_by_id() -> None:
    store = _store("batch").open()
    store.ensure_collection()
    pipeline = Pipeline(
        "batch",
        BlocksSource(ASSET, _manifest()),
        [WordsDecode(), BatchEmbed(), WriteStage(store, batch_size=5)],
    )
    _run(pipeline)
    stored = _stored_vectors(store)
    for key, word in _expected_words().items():
        assert np.allclose(stored[key], _vector(word), atol=1e-6)
    store.close()


def test_pipelines_that_do_not_chain_are_refused_before_running() -> None:
    with pytest.raises(MissingColumnsError, match="embed"):
        Pipeline("bad", BlocksSource(ASSET, _manifest()), [HashEmbed()])
    store = _store()
    with pytest.raises(ValueError, match="after a driver stage"):
        Pipeline(
            "bad",
            BlocksSource(ASSET, _manifest()),
            [WordsDecode(), HashEmbed(), WriteStage(store), HashEmbed()],
        )


class WrongSchema(Stage):
    name = "wrong"
    takes = ASSET
    gives = SEGMENT
    resources = Resources(num_cpus=0.5)

    def process(self, batch: pa.Table) -> pa.Table:
        return batch  # asset rows, not segment rows


def test_a_stage_that_breaks_its_contract_fails_the_run() -> None:
    with pytest.raises(Exception, match="must give SegmentRow"):
        _run(Pipeline("bad", BlocksSource(ASSET, _manifest()), [WrongSchema()]))


class TitleRow(TypedDict):
    asset_id: Annotated[str, pa.string()]
    task: Annotated[str, pa.string()]
    actor: Annotated[str, pa.string()]


TITLES = RowType(TitleRow)


def _title() -> str:
    """This process's title, as ps shows it (Ray sets a worker's to what it runs)."""
    with open("/proc/self/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


class TaskTitle(Stage):
    name = "spell"
    takes = ASSET
    gives = TITLES
    # Not the actor stage's CPUs: Ray Data would fuse the two into the actor.
    resources = Resources(num_cpus=0.5)

    def process(self, batch: pa.Table) -> pa.Table:
        ids = batch["asset_id"].to_pylist()
        return TITLES.table([{"asset_id": a, "task": _title(), "actor": ""} for a in ids])


class ActorTitle(Stage):
    name = "speak"
    takes = TITLES
    gives = TITLES
    resources = Resources(num_cpus=0.25, concurrency=1, actor=True)

    def process(self, batch: pa.Table) -> pa.Table:
        return TITLES.table([{**r, "actor": _title()} for r in batch.to_pylist()])


class Tally(Stage):
    """A driver stage that spins ~0.3 s of CPU and sleeps 0.6 s per run."""

    name = "tally"
    takes = TITLES
    gives = TITLES
    resources = Resources(num_cpus=0, on_driver=True)
    spun = False

    def process(self, batch: pa.Table) -> pa.Table:
        if not self.spun:
            self.spun = True
            import time

            start = time.thread_time()
            while time.thread_time() - start < 0.3:
                pass
            time.sleep(0.6)
        return batch


def test_workers_are_titled_after_their_stages_and_driver_stages_report_their_cpu() -> None:
    pipeline = Pipeline(
        "titles", BlocksSource(ASSET, _manifest()), [TaskTitle(), ActorTitle(), Tally()]
    )
    rows, figures = _run(pipeline)
    assert len(rows) == len(TEXTS)
    # What ps shows for a stage's workers names the stage (Ray Data's operator is named after it).
    assert {r["task"].split("->")[0] for r in rows} == {"ray::MapBatches(spell)"}
    assert all(r["actor"].startswith("ray::MapWorker(MapBatches(speak))") for r in rows), rows
    # The driver stage's CPU in the driver: its spin, not its sleep.
    assert 0.3 <= figures["tally"]["tally_cpu_s"] < 0.6, figures
    assert "spell_cpu_s" not in figures["spell"]
