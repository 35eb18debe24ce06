"""Migrations through aliases, driven as jobs against the local endpoint and read back from the
store: re-embedding 1024 -> 3072, Matryoshka 3072 -> 256, a model that disagrees (no switch),
rollbacks, a query-purpose-only change, the adoption of a plain-named collection, and what the
nightly backfill does through the alias afterwards. Calls are counted at the endpoint.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from pipelines.backfill import BackfillResult, run_backfill
from pipelines.collections import META_KEY, Recorded
from pipelines.config.compose import compose_backfill, compose_migrate
from pipelines.core.errors import ConfigError
from pipelines.migrate import EXIT_NOT_SWITCHED, MigrationResult, run_migration

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

VOCABULARY = [f"w{i}" for i in range(400)]
ASSETS = 10


def _text(seed: int, words: int = 40) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCABULARY) for _ in range(words))


def _corpus(root: Path, n: int = ASSETS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    # Two long notes make two segments each (text_max_chars=400): 12 points for 10 assets.
    rows = [
        {
            "asset_id": f"note-{i}",
            "uri": None,
            "modality": "text",
            "text": _text(i, 40 + 60 * (i < 2)),
        }
        for i in range(n)
    ]
    path = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _common(root: Path, emulator: Endpoints) -> list[str]:
    return [
        "usecase=text_retrieval",
        f"manifest={root / 'manifest.parquet'}",
        *emulator.pipeline_overrides(),
        f"qdrant.path={root / 'qdrant'}",
        "qdrant.collection=docs",
        f"run_dir={root / 'runs'}",
        f"state.path={root / 'state'}",
        "segmentation.text_max_chars=400",
        "segmentation.text_overlap_chars=0",
    ]


def _backfill(root: Path, emulator: Endpoints, *more: str) -> BackfillResult:
    return run_backfill(compose_backfill([*_common(root, emulator), *more]))


def _migrate(root: Path, emulator: Endpoints, *more: str) -> MigrationResult:
    return run_migration(compose_migrate([*_common(root, emulator), *more]))


def _calls(emulator: Endpoints) -> int:
    return sum(1 for r in emulator.emulator.requests if r.operation == "InvokeModel")


class _Store:
    """Read the embedded store directly (what searchers see)."""

    def __init__(self, root: Path) -> None:
        from qdrant_client import QdrantClient

        self.client = QdrantClient(path=str(root / "qdrant"))

    def __enter__(self) -> _Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def collections(self) -> set[str]:
        return {c.name for c in self.client.get_collections().collections}

    def points(self, name: str) -> dict[str, tuple[list[float], dict[str, Any]]]:
        # The dense vector only (text_retrieval keeps keyword vectors beside it).
        records, _ = self.client.scroll(name, limit=10_000, with_vectors=[""])
        return {str(r.id): (list(r.vector), dict(r.payload or {})) for r in records}

    def recorded(self, name: str) -> Recorded:
        rec = Recorded.of(self.client.get_collection(name).config.metadata or {})
        assert rec is not None
        return rec


def _report(result: MigrationResult) -> dict[str, Any]:
    assert result.report_path is not None and result.report_path.exists()
    report: dict[str, Any] = json.loads(result.report_path.read_text())
    return report


def test_reembed_1024_to_3072_validates_switches_and_rolls_back(
    emulator: Endpoints, tmp_path: Path
) -> None:
    _corpus(tmp_path)
    first = _backfill(tmp_path, emulator)
    assert first.exit_code == 0 and first.report["embedded"] == ASSETS
    with _Store(tmp_path) as s:
        # Behind an alias from the start, with the parameters it was built with.
        assert s.aliases() == {"docs": "docs_v1"}
        assert s.recorded("docs_v1").embedding.dimension == 1024
        v1 = s.points("docs_v1")
    assert len(v1) == ASSETS + 2

    # The estimate first: no call, nothing written, and the calls the migration then makes.
    before = _calls(emulator)
    planned = _report(
        _migrate(
            tmp_path,
            emulator,
            "embedding.dimension=3072",
            "validation.sample_queries=5",
            "dry_run=true",
        )
    )
    assert planned["outcome"] == "estimate" and _calls(emulator) == before
    with _Store(tmp_path) as s:
        assert s.aliases() == {"docs": "docs_v1"}

    result = _migrate(
        tmp_path,
        emulator,
        "embedding.dimension=3072",
        "validation.sample_queries=5",
        "validation.k=3",
    )
    calls = _calls(emulator) - before
    assert planned["bedrock_calls"] == calls
    report = _report(result)
    assert result.exit_code == 0 and report["outcome"] == "switched", report
    assert report["from"] == "docs_v1" and report["to"] == "docs_v2"
    retrieval = report["validation"]["retrieval"]
    assert retrieval["queries"] == 5
    assert retrieval["new"]["recall_at_3"] == retrieval["old"]["recall_at_3"] == 1.0
    assert retrieval["new"]["mrr"] == retrieval["old"]["mrr"] == 1.0
    assert report["validation"]["vectors"]["points"] == ASSETS + 2
    assert report["validation"]["points"]["ok"] and report["validation"]["points"]["assets"] == 10
    # Every point embedded once (plus the preflight), every query once per side; no catch-up.
    assert calls == (ASSETS + 2) + 1 + 2 * 5 == report["calls"]
    assert report["catch_up"]["bedrock_calls"] == 0
    with _Store(tmp_path) as s:
        assert s.aliases() == {"docs": "docs_v2"}
        v2 = s.points("docs_v2")
        assert s.points("docs_v1") == v1  # kept, untouched
        assert s.recorded("docs_v2").embedding.dimension == 3072
    assert v2.keys() == v1.keys()  # same point ids: same assets, segments and versions
    assert {len(v) for v, _ in v2.values()} == {3072}

    # The nightly backfill, unchanged (its config still says 1024), writes through the alias
    # with the parameters the collection records: a new note is embedded at 3072.
    manifest = pq.read_table(tmp_path / "manifest.parquet").to_pylist()
    manifest.append({"asset_id": "note-new", "uri": None, "modality": "text", "text": _text(99)})
    pq.write_table(pa.Table.from_pylist(manifest), tmp_path / "manifest.parquet")
    nightly = _backfill(tmp_path, emulator)
    assert nightly.exit_code == 0
    assert nightly.report["embedded"] == 1 and nightly.report["skipped_unchanged"] == ASSETS
    with _Store(tmp_path) as s:
        assert {len(v) for v, _ in s.points("docs_v2").values()} == {3072}
        assert len(s.points("docs_v2")) == ASSETS + 3
    # ... or, when told to keep to its config, says exactly what to change.
    with pytest.raises(ConfigError, match=r"add embedding\.dimension=3072 to the command"):
        _backfill(tmp_path, emulator, "parameters_from=config")

    back = _migrate(tmp_path, emulator, "rollback=true")
    assert back.exit_code == 0 and _report(back)["to"] == "docs_v1"
    with _Store(tmp_path) as s:
        assert s.aliases() == {"docs": "docs_v1"}
        assert s.collections() >= {"docs_v1", "docs_v2"}
    # Through the alias again: the old collection's parameters (1024), only the new note to do.
    again = _backfill(tmp_path, emulator)
    assert again.report["embedded"] == 1 and again.report["collection"] == "docs_v1"


def test_matryoshka_3072_to_256_pays_only_the_sample_and_the_queries(
    emulator: Endpoints, tmp_path: Path
) -> None:
    _corpus(tmp_path)
    assert _backfill(tmp_path, emulator, "embedding.dimension=3072").exit_code == 0
    with _Store(tmp_path) as s:
        v1 = s.points("docs_v1")

    before = _calls(emulator)
    sample, queries = 4, 5
    result = _migrate(
        tmp_path,
        emulator,
        "embedding.dimension=256",
        "strategy=matryoshka",
        f"matryoshka.sample_size={sample}",
        f"validation.sample_queries={queries}",
        "validation.k=3",
    )
    calls = _calls(emulator) - before
    report = _report(result)
    assert result.exit_code == 0 and report["outcome"] == "switched", report
    assert calls <= sample + queries, report
    assert report["matryoshka_sample"]["ok"] and report["matryoshka_sample"]["min_cosine"] > 0.999
    assert report["truncated"]["points"] == ASSETS + 2
    retrieval = report["validation"]["retrieval"]
    assert retrieval["new"]["recall_at_3"] == retrieval["old"]["recall_at_3"] == 1.0
    with _Store(tmp_path) as s:
        assert s.aliases() == {"docs": "docs_v2"}
        assert "docs_v2__sample" not in s.collections()
        v2 = s.points("docs_v2")
    assert v2.keys() == v1.keys()
    for pid, (vector, payload) in v2.items():
        prefix = np.asarray(v1[pid][0][:256])
        assert np.allclose(vector, prefix / np.linalg.norm(prefix), atol=1e-5)
        assert "dimension=256" in payload["fingerprint"]
    # The journal came along: the nightly through the alias has nothing to do.
    nightly = _backfill(tmp_path, emulator, "embedding.dimension=3072")
    assert nightly.report["skipped_unchanged"] == ASSETS and nightly.report["bedrock_calls"] == 0

    back = _migrate(tmp_path, emulator, "rollback=true")
    assert back.exit_code == 0
    with _Store(tmp_path) as s:
        assert s.aliases() == {"docs": "docs_v1"}


def test_a_model_that_disagrees_drops_recall_and_the_alias_stays(
    emulator: Endpoints, tmp_path: Path
) -> None:
    _corpus(tmp_path)
    assert _backfill(tmp_path, emulator).exit_code == 0
    # Every call of the build (its preflight and 12 segments) answers with other vectors; the
    # queries, made after, get the model's usual ones.
    emulator.emulator.script(["OtherVectors"] * (1 + ASSETS + 2))
    # k=3 of 10 assets: recall@k says something (at k=10 every asset is a hit).
    result = _migrate(
        tmp_path,
        emulator,
        "embedding.dimension=3072",
        "validation.sample_queries=5",
        "validation.k=3",
    )
    report = _report(result)
    assert result.exit_code == EXIT_NOT_SWITCHED and report["outcome"] == "not_switched"
    retrieval = report["validation"]["retrieval"]
    assert retrieval["old"]["recall_at_3"] == retrieval["old"]["mrr"] == 1.0
    assert retrieval["new"]["recall_at_3"] < 0.9 and retrieval["new"]["mrr"] < 0.9, retrieval
    assert any("recall@3" in f for f in report["validation"]["failures"])
    # Structure alone passes: the vectors are well-formed, there are as many as before.
    assert report["validation"]["vectors"]["ok"] and report["validation"]["points"]["ok"]
    with _Store(tmp_path) as s:
        assert s.aliases() == {"docs": "docs_v1"}
        assert s.recorded("docs_v2").migration["status"] == "rejected"  # type: ignore[index]


def test_a_query_purpose_change_needs_no_migration(emulator: Endpoints, tmp_path: Path) -> None:
    _corpus(tmp_path)
    assert _backfill(tmp_path, emulator).exit_code == 0
    before = _calls(emulator)
    result = _migrate(tmp_path, emulator, "embedding.query_purpose=GENERIC_RETRIEVAL")
    assert result.exit_code == 0 and _report(result)["reason"] == "query_purpose_only"
    assert _calls(emulator) == before
    with _Store(tmp_path) as s:
        assert s.collections() == {"docs_v1"}


def test_matryoshka_refuses_what_truncation_cannot_do(emulator: Endpoints, tmp_path: Path) -> None:
    _corpus(tmp_path)
    assert _backfill(tmp_path, emulator).exit_code == 0
    with pytest.raises(ConfigError) as info:
        _migrate(tmp_path, emulator, "embedding.dimension=3072", "strategy=matryoshka")
    assert info.value.key == "strategy"


def test_a_plain_named_collection_is_adopted(emulator: Endpoints, tmp_path: Path) -> None:
    _corpus(tmp_path)
    # What an earlier version left: a collection under the plain name, no alias, no record.
    assert _backfill(tmp_path, emulator, "qdrant.physical_collection=docs").exit_code == 0
    with _Store(tmp_path) as s:
        s.client.update_collection("docs", metadata={META_KEY: None})
        assert s.aliases() == {} and s.collections() == {"docs"}
        plain = s.points("docs")
    # Runs keep working on it (and say how to adopt it); a migration asks for the adoption.
    assert _backfill(tmp_path, emulator).report["skipped_unchanged"] == ASSETS
    with pytest.raises(ConfigError, match="adopt=true"):
        _migrate(tmp_path, emulator, "embedding.dimension=3072")

    before = _calls(emulator)
    adopted = _migrate(tmp_path, emulator, "adopt=true")
    assert adopted.exit_code == 0 and _report(adopted)["to"] == "docs_v1"
    assert _calls(emulator) == before  # a copy, no call
    with _Store(tmp_path) as s:
        assert s.aliases() == {"docs": "docs_v1"} and s.collections() == {"docs_v1"}
        assert s.points("docs_v1") == plain
        assert s.recorded("docs_v1").embedding.dimension == 1024
    # The journal came along: nothing to do through the alias; then it migrates.
    nightly = _backfill(tmp_path, emulator)
    assert nightly.report["skipped_unchanged"] == ASSETS and nightly.report["bedrock_calls"] == 0
    moved = _migrate(tmp_path, emulator, "embedding.dimension=3072", "validation.sample_queries=3")
    assert moved.exit_code == 0


def test_adoption_refuses_other_parameters(emulator: Endpoints, tmp_path: Path) -> None:
    _corpus(tmp_path)
    assert _backfill(tmp_path, emulator, "qdrant.physical_collection=docs").exit_code == 0
    with _Store(tmp_path) as s:
        s.client.update_collection("docs", metadata={META_KEY: None})
    with pytest.raises(ConfigError):
        _migrate(tmp_path, emulator, "adopt=true", "embedding.dimension=3072")
    with _Store(tmp_path) as s:
        assert s.collections() == {"docs"} and s.aliases() == {}
