"""Search and evaluation measured on generated corpora, against the local endpoint and embedded
Qdrant: audio excerpts find their track and offset, a fused picture + words query lifts a planted
product, hybrid search finds a rare keyword dense search misses, grouped hits name each asset
once, and jobs.evaluate's figures, report and plot. Every figure is printed (``-s``) and checked.
"""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from nova_devkit.media import make_article, make_near_duplicate, make_product_photo
from nova_devkit.media.av import make_audio_excerpt, make_tone_audio
from pipelines.backfill import run_backfill
from pipelines.config.compose import compose_backfill, compose_evaluate, compose_search
from pipelines.core.errors import ConfigError
from pipelines.evaluate_collection import run_evaluation
from pipelines.search import run_search

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

ROOT = Path(__file__).resolve().parents[2]
WINDOW_S, HOP_S = 10.0, 5.0  # the audio_fingerprinting use case's windows


def _backfill(
    root: Path, endpoints: Endpoints, usecase: str, rows: list[dict[str, Any]], *more: str
) -> None:
    manifest = root / "manifest.parquet"
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


def _search(root: Path, endpoints: Endpoints, *overrides: str) -> list[dict[str, Any]]:
    cfg = compose_search(
        [*overrides, *endpoints.pipeline_overrides(), f"qdrant.path={root / 'qdrant'}"]
    )
    return run_search(cfg).hits


def _rank(hits: list[dict[str, Any]], key: str, value: str) -> int:
    """0-based rank of the first hit whose ``key`` is ``value`` (len(hits) when absent)."""
    return next((i for i, h in enumerate(hits) if h.get(key) == value), len(hits))


# -- audio fingerprinting ------------------------------------------------------------------------

TRACKS = [("music", s, 40.0 + 5 * s) for s in range(4)] + [("speech", 10 + s, 45.0) for s in (0, 1)]


@pytest.fixture(scope="module")
def audio_corpus(tmp_path_factory: pytest.TempPathFactory, endpoints: Endpoints) -> Path:
    root = tmp_path_factory.mktemp("audio")
    (root / "corpus").mkdir()
    rows = []
    for kind, seed, seconds in TRACKS:
        path = root / "corpus" / f"{kind}-{seed}.mp3"
        make_tone_audio(path, seconds, kind=kind, seed=seed)
        rows.append({"asset_id": f"{kind}-{seed}", "uri": str(path), "label": kind})
    _backfill(root, endpoints, "audio_fingerprinting", rows)
    return root


def test_audio_excerpts_find_their_track_and_offset(
    audio_corpus: Path, endpoints: Endpoints
) -> None:
    """24 excerpts of a window's length, cut at random offsets (not on the window grid) and
    re-encoded: the first hit is the source track in >= 90% of cases, with ``offset_s`` within
    half a hop of the true start."""
    rng = random.Random(7)
    (audio_corpus / "queries").mkdir(exist_ok=True)
    found = placed = 0
    errors: list[float] = []
    n = 24
    for i in range(n):
        kind, seed, seconds = TRACKS[i % len(TRACKS)]
        start = round(rng.uniform(0, seconds - WINDOW_S), 2)
        excerpt = audio_corpus / "queries" / f"excerpt-{i}.wav"
        make_audio_excerpt(audio_corpus / "corpus" / f"{kind}-{seed}.mp3", excerpt, start, WINDOW_S)
        hits = _search(
            audio_corpus,
            endpoints,
            "usecase=audio_fingerprinting",
            f"query.audio={excerpt}",
            "top_k=3",
        )
        top = hits[0]
        assert top["position"]["end_s"] - top["position"]["start_s"] == pytest.approx(WINDOW_S)
        if top["asset_id"] == f"{kind}-{seed}":
            found += 1
            errors.append(abs(top["offset_s"] - start))
            placed += errors[-1] <= HOP_S / 2
    print(
        f"\naudio: {found}/{n} excerpts found their track first, {placed}/{n} also within "
        f"{HOP_S / 2:.1f} s (mean offset error {sum(errors) / max(1, len(errors)):.2f} s, "
        f"max {max(errors, default=0):.2f} s)"
    )
    assert found / n >= 0.9
    assert placed / n >= 0.9


# -- a picture and words, fused ------------------------------------------------------------------

WORDS = "alpine trail waterproof leather boot"
FILLER = [
    "sturdy",
    "everyday",
    "item",
    "with",
    "a",
    "simple",
    "finish",
    "and",
    "a",
    "neutral",
    "colour",
    "for",
    "daily",
    "use",
]


def _description(words: list[str], seed: int) -> str:
    rng = random.Random(seed)
    body = [rng.choice(FILLER) for _ in range(14)]
    for w in words:
        body.insert(rng.randrange(len(body) + 1), w)
    return " ".join(body)


@pytest.fixture(scope="module")
def product_corpus(tmp_path_factory: pytest.TempPathFactory, endpoints: Endpoints) -> Path:
    """Products as a photo and a description each (two assets, one label: the product).

    - ``look``: its photo is the one the query picture was taken of; its words are unrelated;
    - ``target``: its photo is ``look``'s blended with another product's, its description holds
      three of the five query words;
    - ``wordy``: its description holds all five words, its photo is a flat grey card;
    - six others: photos of other products, one query word each.
    """
    from PIL import Image

    root = tmp_path_factory.mktemp("products")
    img = root / "images"
    img.mkdir()
    words = WORDS.split()
    make_product_photo(img / "look.jpg", seed=1)
    make_near_duplicate(img / "look.jpg", img / "query.jpg", seed=50)
    make_product_photo(img / "else.jpg", seed=2)
    with Image.open(img / "look.jpg") as a, Image.open(img / "else.jpg") as b:
        Image.blend(a.convert("RGB"), b.convert("RGB").resize(a.size), 0.4).save(img / "target.jpg")
    Image.new("RGB", (320, 240), (128, 128, 128)).save(img / "wordy.jpg", quality=90)
    texts = {"look": _description([], 1), "target": _description(words[:3], 2)}
    texts["wordy"] = _description(words, 3)
    for i in range(6):
        make_product_photo(img / f"other-{i}.jpg", seed=10 + i)
        texts[f"other-{i}"] = _description([words[i % len(words)]], 10 + i)
    rows = []
    for product, text in texts.items():
        rows.append(
            {
                "asset_id": f"{product}-photo",
                "uri": str(img / f"{product}.jpg"),
                "text": None,
                "label": product,
            }
        )
        rows.append({"asset_id": f"{product}-text", "uri": None, "text": text, "label": product})
    _backfill(root, endpoints, "mixed_media", rows, "usecase.modalities=[text,image]")
    return root


def test_fused_picture_and_words_lift_the_planted_product(
    product_corpus: Path, endpoints: Endpoints
) -> None:
    common = ["usecase=mixed_media", "group_by=label", "top_k=9"]
    picture = f"query.image={product_corpus / 'images' / 'query.jpg'}"
    words = f"query.text={WORDS}"
    by_image = _search(product_corpus, endpoints, *common, picture)
    by_words = _search(product_corpus, endpoints, *common, words)
    fused = _search(product_corpus, endpoints, *common, picture, words)
    weighted = _search(
        product_corpus,
        endpoints,
        *common,
        picture,
        words,
        "search.fusion=weighted",
        "search.weights.image=1",
        "search.weights.text=1",
    )
    ranks = {
        name: _rank(hits, "group", "target")
        for name, hits in (
            ("image", by_image),
            ("words", by_words),
            ("fused", fused),
            ("weighted", weighted),
        )
    }
    print(f"\nfused: rank of the planted product (0 = first): {ranks}")
    assert by_image[0]["group"] == "look" and by_words[0]["group"] == "wordy"
    assert ranks["image"] >= 1 and ranks["words"] >= 1
    assert ranks["fused"] == 0 and ranks["fused"] < min(ranks["image"], ranks["words"])
    assert ranks["weighted"] == 0
    # The fused group shows the points of both parts: its photo and its description.
    assert {s["segment_index"] for s in fused[0]["segments"]} == {0}
    assert len(fused[0]["segments"]) == 2
    # Grouped: each product once.
    assert len({h["group"] for h in fused}) == len(fused)


# -- hybrid: a rare keyword ----------------------------------------------------------------------

RARE = "zqx7731"
# Ten astronomy articles, each sentence followed by the archive's boilerplate, and two on
# cooking; article-1 (cooking) mentions a part number once.
SEEDS = [8 * i for i in range(10)] + [1, 9]
BOILERPLATE = "Observatory bulletin archive copy."
ASTRONOMY = "observatory bulletin archive copy"


def _article(seed: int) -> str:
    text = make_article(seed, paragraphs=5)
    if seed % 8 == 0:
        text = text.replace(". ", f". {BOILERPLATE} ")
    if seed == 1:
        cut = len(text) // 2
        text = f"{text[:cut]} The replacement part is {RARE}. {text[cut:]}"
    return text


@pytest.fixture(scope="module")
def text_corpus(tmp_path_factory: pytest.TempPathFactory, endpoints: Endpoints) -> Path:
    """Articles cut into chunks of 600 characters (several points per asset)."""
    root = tmp_path_factory.mktemp("texts")
    rows = [
        {"asset_id": f"article-{s}", "uri": None, "text": _article(s), "label": f"t{i % 3}"}
        for i, s in enumerate(SEEDS)
    ]
    _backfill(
        root,
        endpoints,
        "text_retrieval",
        rows,
        "segmentation.text_max_chars=600",
        "segmentation.text_overlap_chars=0",
    )
    return root


def test_hybrid_finds_a_rare_keyword_dense_misses(text_corpus: Path, endpoints: Endpoints) -> None:
    query = f"query.text={ASTRONOMY} {RARE}"
    ranks = {
        mode: _rank(
            _search(
                text_corpus,
                endpoints,
                "usecase=text_retrieval",
                query,
                f"search.mode={mode}",
                "group_by=asset",
            ),
            "asset_id",
            "article-1",
        )
        for mode in ("dense", "sparse", "hybrid")
    }
    print(f"\nhybrid: rank of the article with {RARE!r} (0 = first): {ranks}")
    # Dense search misses it in its first three; keywords find it first, and the fusion keeps
    # it in the first three (beside the articles dense search prefers).
    assert ranks["dense"] >= 3
    assert ranks["sparse"] == 0 and ranks["hybrid"] < 3
    # The hit places the chunk that holds the keyword.
    hit = _search(
        text_corpus, endpoints, "usecase=text_retrieval", query, "search.mode=sparse", "top_k=1"
    )[0]
    full = _article(1)
    pos = hit["position"]
    assert RARE in full[pos["char_start"] : pos["char_end"]]


def test_grouped_hits_name_each_asset_once(text_corpus: Path, endpoints: Endpoints) -> None:
    # Plain words (a command line's value: no punctuation for Hydra's grammar to read).
    query = "query.text=" + " ".join(re.findall(r"[a-z]+", _article(16).lower())[:30])
    points = _search(text_corpus, endpoints, "usecase=text_retrieval", query, "top_k=20")
    grouped = _search(
        text_corpus, endpoints, "usecase=text_retrieval", query, "top_k=8", "group_by=asset"
    )
    assets = [h["asset_id"] for h in points]
    print(
        f"\ngrouping: {len(assets)} points name {len(set(assets))} assets; "
        f"grouped: {len(grouped)} hits"
    )
    assert len(set(assets)) < len(assets)  # ungrouped, assets repeat
    assert len(grouped) == 8 and len({h["asset_id"] for h in grouped}) == 8
    assert grouped[0]["asset_id"] == "article-16"
    for h in grouped:
        assert 1 <= len(h["segments"]) <= 3
        assert all(s["position"]["char_end"] > s["position"]["char_start"] for s in h["segments"])
        scores = [s["score"] for s in h["segments"]]
        assert scores == sorted(scores, reverse=True) and h["score"] == scores[0]
    # A payload filter keeps only its label.
    filtered = _search(
        text_corpus, endpoints, "usecase=text_retrieval", query, "top_k=20", "filter.label=t1"
    )
    assert filtered and {h["label"] for h in filtered} == {"t1"}


def test_search_job_prints_json_and_refuses_bad_keys(
    text_corpus: Path, endpoints: Endpoints
) -> None:
    args = [
        sys.executable,
        "-m",
        "jobs.search",
        "usecase=text_retrieval",
        f"query.text={ASTRONOMY} {RARE}",
        "search.mode=sparse",
        "top_k=2",
        "format=json",
        "filter.label=t1",
        f"qdrant.path={text_corpus / 'qdrant'}",
    ]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)  # stdout holds the hits only
    assert hits[0]["asset_id"] == "article-1" and {h["label"] for h in hits} == {"t1"}
    assert set(hits[0]) >= {"score", "asset_id", "segment_index", "position", "uri"}
    bad = subprocess.run(
        [*args[:4], "query.text=x", "search.mode=fuzzy", f"qdrant.path={text_corpus / 'qdrant'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: search.mode:")


# -- jobs.evaluate -------------------------------------------------------------------------------


def test_evaluate_measures_per_modality_and_kind(
    text_corpus: Path, endpoints: Endpoints, tmp_path: Path
) -> None:
    rows = [
        {
            "query_id": f"own-{s}",
            "text": " ".join(make_article(s, paragraphs=1).split()[:40]),
            "asset_ids": [f"article-{s}"],
            "kind": "passage",
        }
        for s in SEEDS[:6]
    ]
    rows.append(
        {
            "query_id": "code",
            "text": f"{ASTRONOMY} {RARE}",
            "asset_ids": ["article-1"],
            "kind": "code",
        }
    )
    # A query that cannot succeed: its expected asset is not in the collection.
    rows.append(
        {"query_id": "absent", "text": "anything", "asset_ids": ["missing"], "kind": "code"}
    )
    queries = tmp_path / "queries.parquet"
    pq.write_table(pa.Table.from_pylist(rows), queries)

    def evaluate(mode: str) -> Any:
        cfg = compose_evaluate(
            [
                "usecase=text_retrieval",
                f"queries={queries}",
                "k=5",
                f"search.mode={mode}",
                *endpoints.pipeline_overrides(),
                f"qdrant.path={text_corpus / 'qdrant'}",
                f"out_dir={tmp_path / mode}",
            ]
        )
        return run_evaluation(cfg)

    dense, hybrid = evaluate("dense"), evaluate("hybrid")
    print(
        f"\nevaluate: dense recall@5 {dense.overall.recall_at_k:.3f} MRR {dense.overall.mrr:.3f} "
        f"nDCG {dense.overall.ndcg:.3f}; hybrid recall@5 {hybrid.overall.recall_at_k:.3f} MRR "
        f"{hybrid.overall.mrr:.3f}; per kind (hybrid): "
        + ", ".join(f"{k} {m.mrr:.3f}" for k, m in hybrid.by_kind.items())
    )
    assert dense.by_kind["passage"].recall_at_k == 1.0 and dense.by_kind["passage"].mrr == 1.0
    assert hybrid.by_kind["code"].queries == 2 and hybrid.by_kind["code"].mrr == 0.25
    assert dense.by_kind["code"].mrr < hybrid.by_kind["code"].mrr
    assert "absent" in hybrid.overall.missed
    assert set(dense.by_modality) == {"text"} and dense.by_modality["text"].queries == 8
    report = json.loads((tmp_path / "hybrid" / "evaluation.json").read_text())
    assert report["overall"]["recall_at_5"] == pytest.approx(7 / 8, abs=1e-4)
    # The part number's article second (hybrid), the absent one nowhere: (1/log2(3) + 0) / 2.
    assert report["by_kind"]["code"]["ndcg_at_5"] == pytest.approx(0.5 / math.log2(3), abs=1e-4)
    assert (tmp_path / "hybrid" / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="queries"):
        run_evaluation(
            compose_evaluate(["usecase=text_retrieval", f"queries={tmp_path / 'none.parquet'}"])
        )
