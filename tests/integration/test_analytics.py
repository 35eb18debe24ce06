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
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from nova_devkit.media import TOPIC_NAMES, TOPICS, article_topic, make_article
from pipelines.backfill import run_backfill
from pipelines.config.compose import compose_analytics, compose_backfill
from pipelines.core.errors import ConfigError

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

ROOT = Path(__file__).resolve().parents[2]


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
    endpoints.emulator.reset()  # whatever an earlier module scripted (faults, quotas) is gone
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


# -- near-duplicates -----------------------------------------------------------------------------

HEADLINES = [
    "Storm closes the coastal highway for three days as crews clear fallen trees",
    "Central bank holds interest rates steady and signals caution on inflation",
    "City council approves the new bicycle lanes along the river embankment",
    "Local bakery wins the national prize for its sourdough and rye loaves",
    "Museum reopens its dinosaur hall after a two year renovation project",
    "Ferry service to the northern islands suspended after engine failure",
    "University researchers map the migration routes of arctic terns",
    "Farmers report an early harvest of apples after a warm dry summer",
]


def _edited(headline: str) -> str:
    """The same headline as another outlet writes it: case, punctuation, one word changed."""
    words = headline.split()
    words[-1] = words[-1].upper()
    return " ".join(words).replace(" the ", " a ", 1) + "."


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, endpoints: Endpoints) -> tuple[Path, set]:
    """A mixed collection of originals and planted near-duplicates: photos re-encoded, resized,
    cropped and brightened; recordings trimmed and re-encoded; clips re-encoded at another size
    and trimmed; headlines edited. Returns the folder and the planted (original, copy) pairs."""
    from nova_devkit.media import make_near_duplicate, make_product_photo
    from nova_devkit.media.av import make_audio_excerpt, make_tone_audio, make_video

    endpoints.emulator.reset()
    root = tmp_path_factory.mktemp("duplicates")
    media = root / "media"
    media.mkdir()
    rows: list[dict[str, Any]] = []
    truth: set[tuple[str, str]] = set()

    def add(asset_id: str, uri: Path | None = None, text: str | None = None) -> None:
        rows.append({"asset_id": asset_id, "uri": str(uri) if uri else None, "text": text})

    for i in range(14):
        photo = make_product_photo(media / f"photo-{i}.jpg", seed=i, size=(200, 150))
        add(f"photo-{i}", photo)
        if i < 9:
            copy = make_near_duplicate(photo, media / f"photo-{i}-copy.png", seed=i)
            add(f"photo-{i}-copy", copy)
            truth.add((f"photo-{i}", f"photo-{i}-copy"))
    for i in range(6):
        # Music: the local endpoint's spectral features of speech-like noise vary along the
        # track, so a trimmed speech copy is not close to its original there.
        track = Path(make_tone_audio(media / f"track-{i}.wav", 14.0, kind="music", seed=20 + i))
        add(f"track-{i}", track)
        if i < 5:
            copy = Path(make_audio_excerpt(track, media / f"track-{i}-trim.mp3", 1.0, 12.0))
            add(f"track-{i}-trim", copy)
            truth.add((f"track-{i}", f"track-{i}-trim"))
    for i in range(5):
        clip = Path(make_video(media / f"clip-{i}.mp4", 6.0, size=(160, 96), seed=40 + i))
        add(f"clip-{i}", clip)
        if i < 4:
            copy = make_video(
                media / f"clip-{i}-small.mp4", 5.0, size=(128, 80), seed=40 + i, crf=36
            )
            add(f"clip-{i}-small", Path(copy))
            truth.add((f"clip-{i}", f"clip-{i}-small"))
    for i, headline in enumerate(HEADLINES):
        add(f"headline-{i}", text=headline)
        if i < 4:
            add(f"headline-{i}-copy", text=_edited(headline))
            truth.add((f"headline-{i}", f"headline-{i}-copy"))
    _backfill(root, endpoints, "mixed_media", rows)
    return root, truth


def test_duplicates_finds_the_planted_copies(
    planted: tuple[Path, set], endpoints: Endpoints
) -> None:
    from pipelines.analytics.duplicates import run_duplicates

    root, truth = planted
    cfg = compose_analytics(
        "duplicates", _overrides(root, endpoints, "usecase=mixed_media", "scan_batch=16")
    )
    result = run_duplicates(cfg)
    table = pq.read_table(result.duplicates_path).to_pylist()
    groups: dict[int, set[str]] = {}
    for row in table:
        groups.setdefault(row["group_id"], set()).add(row["asset_id"])
    found = {(a, b) for members in groups.values() for a in members for b in members if a < b}
    hits = found & truth
    precision = len(hits) / len(found) if found else 0.0
    recall = len(hits) / len(truth)
    by_modality = {}
    for a, b in truth:
        mod = a.split("-")[0]
        got = by_modality.setdefault(mod, [0, 0])
        got[0] += (a, b) in found
        got[1] += 1
    print(
        f"\nduplicates: {len(truth)} planted pairs, {len(found)} found, precision "
        f"{precision:.3f}, recall {recall:.3f}; per modality {by_modality}; "
        f"{result.summary['points']} points in {result.summary['blocks']} blocks"
    )
    for miss in sorted(truth - found):
        print("  missed", miss)
    for extra in sorted(found - truth):
        print("  extra", extra)
    assert len(truth) >= 20 and len(by_modality) >= 4
    assert precision >= 0.9 and recall >= 0.9
    assert result.summary["blocks"] >= 3
    assert all(0 < row["similarity"] <= 1.0001 for row in table)
    assert {"group_id", "asset_id", "similarity"} <= set(table[0])
    report = json.loads(result.report_path.read_text())
    assert report["groups"] == len(groups)


def test_duplicates_thresholds_are_per_modality(
    planted: tuple[Path, set], endpoints: Endpoints
) -> None:
    from pipelines.analytics.duplicates import run_duplicates

    root, _ = planted
    strict = compose_analytics(
        "duplicates",
        _overrides(root, endpoints, "usecase=mixed_media", "thresholds.image=1.0"),
    )
    result = run_duplicates(strict)
    assert "image" not in result.summary["by_modality"]
    assert result.summary["by_modality"]  # the other modalities keep their groups
    with pytest.raises(ConfigError, match=r"^thresholds\.audio"):
        run_duplicates(
            compose_analytics(
                "duplicates",
                _overrides(root, endpoints, "usecase=mixed_media", "thresholds.audio=0"),
            )
        )


# -- topic clusters ------------------------------------------------------------------------------

TOPICS_PLANTED, PER_TOPIC = 6, 6


def _topic_note(topic: str, seed: int, words: int = 30) -> str:
    """A short note in a topic's own words. (The generated articles wrap three topic words in a
    dozen shared filler words per sentence; the local endpoint's hashed n-grams then see mostly
    the filler, which leaves nearest neighbours right but no cluster structure to find.)"""
    rng = random.Random(f"note-{topic}-{seed}")
    vocab = TOPICS[topic][1]
    return " ".join(rng.choice(vocab) for _ in range(words)).capitalize() + "."


@pytest.fixture(scope="module")
def topics(tmp_path_factory: pytest.TempPathFactory, endpoints: Endpoints) -> Path:
    """Notes on 6 planted topics, embedded with the CLUSTERING purpose."""
    endpoints.emulator.reset()
    root = tmp_path_factory.mktemp("cluster")
    rows = [
        {"asset_id": f"{t}-{i}", "uri": None, "text": _topic_note(t, i), "label": t}
        for t in TOPIC_NAMES[:TOPICS_PLANTED]
        for i in range(PER_TOPIC)
    ]
    _backfill(root, endpoints, "topic_clustering", rows)
    return root


@pytest.mark.parametrize("clusters", ["null", str(TOPICS_PLANTED)])
def test_cluster_recovers_planted_topics(topics: Path, endpoints: Endpoints, clusters: str) -> None:
    from pipelines.analytics.cluster import run_cluster

    cfg = compose_analytics(
        "cluster",
        _overrides(
            topics, endpoints, "usecase=topic_clustering", f"clusters={clusters}", "scan_batch=8"
        ),
    )
    result = run_cluster(cfg)
    s = result.summary
    print(
        f"\nclusters ({'estimated' if s['estimated'] else 'chosen'}): k={s['clusters']}, "
        f"ARI {s['adjusted_rand_index']}, sizes {s['sizes']}, silhouettes {s['silhouette_by_k']}"
    )
    assert s["points"] == TOPICS_PLANTED * PER_TOPIC and s["blocks"] >= 4
    assert s["adjusted_rand_index"] >= 0.8
    # Recomputed from what was written, not taken from the summary.
    from sklearn.metrics import adjusted_rand_score

    rows = pq.read_table(result.assignments_path).to_pylist()
    ari = adjusted_rand_score([r["label"] for r in rows], [r["cluster"] for r in rows])
    assert ari == pytest.approx(s["adjusted_rand_index"], abs=1e-3)
    table = pq.read_table(result.clusters_path).to_pylist()
    assert sum(r["size"] for r in table) == len(rows)
    assert all(1 <= len(r["representatives"]) <= 3 for r in table if r["size"])
    members = {(r["asset_id"], r["cluster"]) for r in rows}
    assert all((a, r["cluster"]) in members for r in table for a in r["representatives"])
    assert result.plot_path.stat().st_size > 5000


def test_cluster_refuses_bad_keys(topics: Path, endpoints: Endpoints) -> None:
    from pipelines.analytics.cluster import run_cluster

    base = _overrides(topics, endpoints, "usecase=topic_clustering")
    for key, value in (("clusters", "1"), ("max_clusters", "1"), ("sample", "5")):
        with pytest.raises(ConfigError, match=rf"^{key}"):
            run_cluster(compose_analytics("cluster", [*base, f"{key}={value}"]))


# -- the MCP server ------------------------------------------------------------------------------


async def _mcp_session(root: Path, endpoints: Endpoints, calls: list[tuple[str, dict]]) -> list:
    """Start ``python -m jobs.mcp`` as a real MCP client does (a subprocess on stdio), list its
    tools, make ``calls``; returns the tool names and each call's result."""
    import os
    import sys

    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "jobs.mcp",
            "usecase=mixed_media",
            *endpoints.pipeline_overrides(),
            f"qdrant.path={root / 'qdrant'}",
        ],
        env={k: v for k, v in os.environ.items() if k.startswith("AWS_")},
        cwd=str(ROOT),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = sorted(t.name for t in (await session.list_tools()).tools)
        results = []
        for name, arguments in calls:
            answer = await session.call_tool(name, arguments)
            assert not answer.is_error, answer
            results.append(json.loads(answer.content[0].text))
        return [tools, *results]


def test_mcp_server_answers_as_jobs_search(planted: tuple[Path, set], endpoints: Endpoints) -> None:
    import anyio

    from pipelines.config.compose import compose_search
    from pipelines.search import run_search

    root, _ = planted
    photo = str(root / "media" / "photo-3-copy.png")
    words = "storm coastal highway fallen trees"

    def jobs_search(*more: str) -> list[dict[str, Any]]:
        cfg = compose_search(
            [
                "usecase=mixed_media",
                *endpoints.pipeline_overrides(),
                f"qdrant.path={root / 'qdrant'}",
                *more,
            ]
        )
        return run_search(cfg).hits

    by_picture = jobs_search(f"query.image={photo}", "top_k=5")
    by_words = jobs_search(f"query.text={words}", "top_k=3", "filter.modality=text")
    tools, picture, text, asset, listed = anyio.run(
        _mcp_session,
        root,
        endpoints,
        [
            ("search", {"image": photo, "top_k": 5}),
            ("search", {"text": words, "top_k": 3, "filter": {"modality": "text"}}),
            ("get_asset", {"asset_id": "track-2"}),
            ("list_collections", {}),
        ],
    )
    print(
        f"\nmcp: tools {tools}; picture hits {[h['asset_id'] for h in picture]}; "
        f"words hits {[h['asset_id'] for h in text]}"
    )
    assert tools == ["get_asset", "list_collections", "search"]
    assert picture == by_picture and text == by_words  # the same hits, scores and positions
    assert picture[0]["asset_id"] in ("photo-3", "photo-3-copy") and len(picture) == 5
    assert text[0]["asset_id"] == "headline-0" and all(h["modality"] == "text" for h in text)
    assert asset["points"] and all(p["asset_id"] == "track-2" for p in asset["points"])
    assert asset["points"][0]["modality"] == "audio"
    assert listed["aliases"]["mixed_media"] in listed["collections"]


def test_duplicates_need_coverage_of_one_asset() -> None:
    """Two 6-page reports sharing one identical page are not copies; a 3-page excerpt of a
    report is (its pages are all in the original)."""
    import numpy as np

    from pipelines.analytics.blocks import VectorBlock, unit_rows
    from pipelines.analytics.duplicates import block_pairs, covered

    rng = np.random.default_rng(0)
    pages = {name: unit_rows(rng.normal(size=(6, 16))) for name in ("a", "b")}
    pages["b"][2] = pages["a"][2]  # one shared page
    excerpt = pages["a"][1:4]
    rows = [("a", i, v) for i, v in enumerate(pages["a"])]
    rows += [("b", i, v) for i, v in enumerate(pages["b"])]
    rows += [("c", i, v) for i, v in enumerate(excerpt)]
    block = VectorBlock(
        [f"p{i}" for i in range(len(rows))],
        np.asarray([v for *_, v in rows], dtype=np.float32),
        {
            "asset_id": [r[0] for r in rows],
            "segment_index": [r[1] for r in rows],
            "modality": ["document"] * len(rows),
            "uri": [None] * len(rows),
            "label": [None] * len(rows),
        },
    )
    found = block_pairs(block, block, True, {"document": 0.95})
    counts = {"a": 6, "b": 6, "c": 3}
    assert set(found) == {("a", "b"), ("a", "c"), ("b", "c")}
    kept = {pair for pair, m in found.items() if covered(m, pair, counts, 0.5)}
    assert kept == {("a", "c")}


@pytest.mark.parametrize(
    "job,args,key",
    [
        ("classify", ["manifest=/no/such/manifest.parquet"], "manifest"),
        ("duplicates", ["usecase=mixed_media"], "qdrant.collection"),
        ("cluster", ["clusters=1"], "clusters"),
        ("mcp", ["top_k=0"], "top_k"),
    ],
)
def test_jobs_exit_2_naming_the_key(job: str, args: list[str], key: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", f"jobs.{job}", f"qdrant.path={tmp_path / 'q'}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"error: {key}:" in proc.stderr
