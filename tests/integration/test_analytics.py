"""Batch analytics measured on corpora generated at test time, against the local endpoint and
embedded Qdrant: classification by a vote of labelled neighbours (accuracy on a held-out set),
near-duplicate groups (precision and recall against planted copies of several modalities), topic
clusters (adjusted Rand index against planted topics) and the MCP server (a real MCP client over
stdio gets the hits jobs.search gives). Every figure is printed (``-s``) and checked.

The local endpoint's vectors are content features (docs/emulator.md): texts on one topic share
vocabulary, copies of a picture or a recording share pixel and spectral statistics. These tests
measure the jobs' machinery on that, not Nova's semantics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from nova_devkit.media import TOPIC_NAMES, article_topic, make_article
from pipelines.backfill import run_backfill
from pipelines.config.compose import compose_analytics, compose_backfill
from pipelines.core.errors import ConfigError

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


def _backfill(
    root: Path, endpoints: Endpoints, usecase: str, rows: list[dict[str, Any]], *more: str
) -> None:
    manifest = root / f"{usecase}.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    result = run_backfill(
        compose_backfill(
            [
                f"usecase={usecase}",
                f"manifest={manifest}",
                *endpoints.pipeline_overrides(),
                f"qdrant.path={root / 'qdrant'}",
                f"run_dir={root / 'runs'}",
                f"state.path={root / 'state'}",
                *more,
            ]
        )
    )
    assert result.exit_code == 0 and result.report["embedded"] == len(rows), result.report


def _overrides(root: Path, endpoints: Endpoints, *more: str) -> list[str]:
    return [
        *endpoints.pipeline_overrides(),
        f"qdrant.path={root / 'qdrant'}",
        f"run_dir={root / 'runs'}",
        *more,
    ]


# -- classification ------------------------------------------------------------------------------

CLASSES = TOPIC_NAMES[:6]
LABELLED_PER_CLASS, HELD_OUT_PER_CLASS = 6, 4


def _article_row(seed: int) -> dict[str, Any]:
    return {
        "asset_id": f"article-{seed}",
        "uri": None,
        "text": make_article(seed, paragraphs=3),
        "label": article_topic(seed),
    }


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory, endpoints: Endpoints) -> Path:
    """A labelled collection of articles on 6 topics, and a held-out manifest of others."""
    root = tmp_path_factory.mktemp("classify")
    n = len(TOPIC_NAMES)
    seeds = [c + n * r for c in range(len(CLASSES)) for r in range(LABELLED_PER_CLASS)]
    held = [
        c + n * (LABELLED_PER_CLASS + r)
        for c in range(len(CLASSES))
        for r in range(HELD_OUT_PER_CLASS)
    ]
    _backfill(root, endpoints, "product_classification", [_article_row(s) for s in seeds])
    pq.write_table(pa.Table.from_pylist([_article_row(s) for s in held]), root / "new.parquet")
    return root


def test_classify_labels_held_out_assets(labelled: Path, emulator: Endpoints) -> None:
    from pipelines.analytics.classify import run_classify

    cfg = compose_analytics(
        "classify",
        _overrides(
            labelled,
            emulator,
            "usecase=product_classification",
            f"manifest={labelled / 'new.parquet'}",
            "k=5",
            "scan_batch=8",  # several blocks: the per-block top-K is merged
        ),
    )
    result = run_classify(cfg)
    s = result.summary
    print(
        f"\nclassification: accuracy {s['accuracy']} on {s['assets']} held-out assets, "
        f"{len(s['classes'])} classes, {s['blocks']} blocks"
    )
    for c, m in s["per_class"].items():
        print(f"  {c:<12} precision {m['precision']:.3f} recall {m['recall']:.3f}")
    assert s["assets"] == len(CLASSES) * HELD_OUT_PER_CLASS and s["errors"] == 0
    assert len(s["classes"]) >= 5 and s["blocks"] >= 4
    assert s["accuracy"] >= 0.8
    table = pq.read_table(result.predictions_path).to_pylist()
    truth = {r["asset_id"]: r["label"] for r in table}
    measured = sum(1 for r in table if r["predicted_label"] == truth[r["asset_id"]]) / len(table)
    assert measured == pytest.approx(s["accuracy"], abs=1e-4)
    assert all(0 < r["score"] <= 1 for r in table)
    assert all(len(r["neighbours"]) == 5 for r in table)
    report = json.loads(result.report_path.read_text())  # type: ignore[union-attr]
    assert sum(map(sum, report["confusion_matrix"])) == len(table)
    assert result.plot_path is not None and result.plot_path.stat().st_size > 1000
    # The purpose crossed the wire: every query of this run was a CLASSIFICATION embedding.
    purposes = {
        r.body["singleEmbeddingParams"]["embeddingPurpose"]
        for r in emulator.emulator.requests
        if r.operation == "InvokeModel"
    }
    assert purposes == {"CLASSIFICATION"}


def test_classify_refuses_bad_keys(labelled: Path, endpoints: Endpoints) -> None:
    from pipelines.analytics.classify import run_classify

    base = _overrides(labelled, endpoints, "usecase=product_classification")
    with pytest.raises(ConfigError, match=r"^manifest"):
        run_classify(compose_analytics("classify", base))
    with pytest.raises(ConfigError, match=r"^k"):
        run_classify(
            compose_analytics("classify", [*base, f"manifest={labelled / 'new.parquet'}", "k=0"])
        )
    with pytest.raises(ConfigError, match=r"qdrant\.collection"):
        run_classify(
            compose_analytics(
                "classify",
                [*base, f"manifest={labelled / 'new.parquet'}", "qdrant.collection=nothing"],
            )
        )
