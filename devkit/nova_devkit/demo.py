"""The demo: a small realistic corpus, the local endpoints, every use case backfilled and queried.

    python -m nova_devkit.demo [out_dir=demo_data] [usecases=[product_search,mixed_media]]

(``make demo``). Everything is generated at run time (nothing binary is committed). The Bedrock
endpoint is the project's local emulator: its vectors are content features, not the model's, so
the hits below show the pipeline's plumbing (near-duplicates and excerpts find their sources), not
Nova's semantics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import pyarrow as pa
import pyarrow.parquet as pq
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from nova_devkit.conf import CONF_PATH
from nova_devkit.emulator.config import EmulatorConfig


@dataclass
class DemoConfig:
    """``python -m nova_devkit.demo``: where to put the corpus and which use cases to run."""

    out_dir: str = "demo_data"
    usecases: list[str] = field(
        default_factory=lambda: [
            "product_search",
            "document_retrieval",
            "text_retrieval",
            "video_clip_search",
            "audio_fingerprinting",
            "mixed_media",
        ]
    )
    # Emulated service: latency and quota (requests/min), to look like a real endpoint.
    latency_ms: float = 40.0
    jitter_ms: float = 40.0
    quota_requests_per_minute: float = 3000.0
    # Keep the corpus from an earlier run (only the index and runs are rebuilt).
    reuse_corpus: bool = True
    overrides: list[str] = field(default_factory=list)


@dataclass
class DemoQuery:
    usecase: str
    label: str
    expect_asset: str
    text: str | None = None
    path: str | None = None
    detail_level: str | None = None


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:32]


def build_corpus(root: Path) -> tuple[Path, list[DemoQuery]]:
    """Write the corpus under ``root/corpus``, its manifest, and the demo's query files."""
    from nova_devkit.media import (
        TOPICS,
        article_topic,
        make_article,
        make_near_duplicate,
        make_pdf,
        make_product_photo,
        make_truncated_file,
    )
    from nova_devkit.media.av import make_tone_audio, make_video

    corpus = root / "corpus"
    queries_dir = root / "queries"
    for d in ("documents", "images", "audio", "video", "text"):
        (corpus / d).mkdir(parents=True, exist_ok=True)
    queries_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []

    def add(
        asset_id: str, path: Path | None, label: str, text: str | None = None, **meta: Any
    ) -> None:
        rows.append(
            {
                "asset_id": asset_id,
                "uri": str(path.resolve()) if path else None,
                "modality": None,
                "text": text,
                "content_version": _sha(path)
                if path
                else hashlib.sha256((text or "").encode()).hexdigest()[:32],
                "metadata": json.dumps(meta),
                "label": label,
                "source": "demo",
            }
        )

    # Documents: multi-page reports with text, tables and charts; one with a scanned page.
    for i, (pages, scanned) in enumerate([(6, ()), (4, (3,)), (3, ())]):
        p = corpus / "documents" / f"report-{i + 1}.pdf"
        make_pdf(p, pages=pages, seed=i, scanned_pages=scanned)
        add(f"report-{i + 1}", p, "report", pages=pages)
    broken = corpus / "documents" / "report-broken.pdf"
    make_truncated_file(corpus / "documents" / "report-1.pdf", broken, 0.4)
    add("report-broken", broken, "report", note="a download cut short")

    # Product photos, with two near-duplicates (re-shoots) in the corpus.
    for i in range(8):
        p = corpus / "images" / f"product-{i:03d}.jpg"
        make_product_photo(p, seed=i)
        add(f"product-{i:03d}", p, "product", sku=f"SKU-{1000 + i}")
    for i in (0, 1):
        p = corpus / "images" / f"product-{i:03d}-reshoot.jpg"
        make_near_duplicate(corpus / "images" / f"product-{i:03d}.jpg", p, seed=i)
        add(f"product-{i:03d}-reshoot", p, "product", sku=f"SKU-{1000 + i}")

    # Audio: spoken-like and music-like, one longer than 30 s.
    for name, seconds, kind, seed, ext in [
        ("speech-1", 12, "speech", 1, "wav"),
        ("speech-2", 20, "speech", 2, "mp3"),
        ("music-1", 45, "music", 3, "mp3"),
        ("music-2", 15, "music", 4, "ogg"),
    ]:
        p = corpus / "audio" / f"{name}.{ext}"
        make_tone_audio(p, seconds, kind=kind, seed=seed)
        add(name, p, kind, seconds=seconds)

    # Video: short clips (one without sound) and one longer than 30 s.
    for name, seconds, audio, seed in [
        ("clip-1", 10, True, 11),
        ("clip-2", 8, False, 12),
        ("long-1", 40, True, 13),
    ]:
        p = corpus / "video" / f"{name}.mp4"
        make_video(p, seconds, fps=10, size=(160, 96), with_audio=audio, gop=20, seed=seed)
        add(name, p, "video", seconds=seconds, has_audio=audio)

    # Text: article files and two inline rows.
    for i in range(6):
        p = corpus / "text" / f"article-{i}.txt"
        p.write_text(make_article(i, paragraphs=8))
        add(f"article-{i}", p, article_topic(i))
    for i in (6, 7):
        add(f"note-{i}", None, article_topic(i), text=make_article(i, paragraphs=2))

    manifest = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)

    # Queries: a re-shoot of a product, a page rendered differently, topic words, excerpts.
    q_img = queries_dir / "product-005-query.jpg"
    make_near_duplicate(corpus / "images" / "product-005.jpg", q_img, seed=99)
    q_page = queries_dir / "report-1-page-2.png"
    _render_page(corpus / "documents" / "report-1.pdf", 2, q_page, dpi=110)
    q_video = queries_dir / "long-1-first-8s.mp4"
    make_video(q_video, 8, fps=10, size=(160, 96), with_audio=True, gop=20, seed=13)
    q_audio = queries_dir / "music-1-first-6s.mp3"
    make_tone_audio(q_audio, 6, kind="music", seed=3)
    topic = article_topic(2)
    topic_words = " ".join(TOPICS[topic][1][:8])
    queries = [
        DemoQuery("product_search", "re-shoot of product-005", "product-005", path=str(q_img)),
        DemoQuery(
            "document_retrieval",
            "page 2 of report-1 at another resolution",
            "report-1",
            path=str(q_page),
            detail_level="DOCUMENT_IMAGE",
        ),
        DemoQuery("text_retrieval", f"words about {topic}", "article-2", text=topic_words),
        DemoQuery("video_clip_search", "first 8 s of long-1", "long-1", path=str(q_video)),
        DemoQuery("audio_fingerprinting", "first 6 s of music-1", "music-1", path=str(q_audio)),
        DemoQuery("mixed_media", f"words about {topic}", "article-2", text=topic_words),
    ]
    write_query_set(root, queries_dir, q_img, q_page, q_video, q_audio)
    return manifest, queries


def write_query_set(
    root: Path, queries_dir: Path, q_img: Path, q_page: Path, q_video: Path, q_audio: Path
) -> Path:
    """``queries.parquet``: the demo corpus's query set for ``jobs.evaluate`` (each query's
    text or file, the assets it should find, its kind)."""
    from nova_devkit.media import TOPICS, article_topic, make_near_duplicate
    from nova_devkit.media.av import make_audio_excerpt

    corpus = root / "corpus"
    rows: list[dict[str, Any]] = [
        {
            "query_id": "reshoot-005",
            "uri": str(q_img),
            "asset_ids": ["product-005"],
            "kind": "re-shoot",
        },
        {"query_id": "page-1-2", "uri": str(q_page), "asset_ids": ["report-1"], "kind": "page"},
        {"query_id": "clip-long-1", "uri": str(q_video), "asset_ids": ["long-1"], "kind": "clip"},
        {
            "query_id": "excerpt-music-1",
            "uri": str(q_audio),
            "asset_ids": ["music-1"],
            "kind": "excerpt",
        },
    ]
    for i in (2, 6):
        q = queries_dir / f"product-00{i}-query.jpg"
        make_near_duplicate(corpus / "images" / f"product-00{i}.jpg", q, seed=90 + i)
        rows.append(
            {
                "query_id": f"reshoot-00{i}",
                "uri": str(q),
                "asset_ids": [f"product-00{i}"],
                "kind": "re-shoot",
            }
        )
    for name, source, start in (("speech-2", "speech-2.mp3", 6.0), ("music-2", "music-2.ogg", 4.0)):
        q = queries_dir / f"{name}-from-{start:.0f}s.wav"
        make_audio_excerpt(corpus / "audio" / source, q, start, 6.0)
        rows.append(
            {"query_id": f"excerpt-{name}", "uri": str(q), "asset_ids": [name], "kind": "excerpt"}
        )
    for i in (0, 3, 5):
        words = " ".join(TOPICS[article_topic(i)][1][:8])
        rows.append(
            {
                "query_id": f"topic-{i}",
                "text": words,
                "asset_ids": [f"article-{i}"],
                "kind": "topic words",
            }
        )
    for row in rows:
        row.setdefault("uri", None)
        row.setdefault("text", None)
    path = root / "queries.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _embed_one_of_each(root: Path, endpoint_url: str) -> None:
    """One synchronous call per modality through the client: dimension and norm of each vector."""
    import math

    from pipelines.bedrock.client import NovaEmbeddingsClient
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.config.schema import BedrockConfig

    client = NovaEmbeddingsClient.from_config(BedrockConfig(endpoint_url=endpoint_url))
    corpus = root / "corpus"
    page = root / "queries" / "report-1-page-2.png"
    clip = corpus / "video" / "clip-1.mp4"
    requests = [
        (
            "text",
            EmbeddingRequest.for_text("Lava flows from the volcano into the sea.", dimension=1024),
        ),
        (
            "image",
            EmbeddingRequest.for_image(
                (corpus / "images" / "product-000.jpg").read_bytes(), "jpeg", dimension=1024
            ),
        ),
        (
            "document page",
            EmbeddingRequest.for_image(
                page.read_bytes(), "png", detail_level="DOCUMENT_IMAGE", dimension=1024
            ),
        ),
        (
            "audio",
            EmbeddingRequest.for_audio(
                (corpus / "audio" / "speech-2.mp3").read_bytes(), "mp3", dimension=1024
            ),
        ),
        (
            "video",
            EmbeddingRequest.for_video(
                clip.read_bytes(), "mp4", "AUDIO_VIDEO_SEPARATE", dimension=1024
            ),
        ),
    ]
    print("[demo] one inline example of every modality (InvokeModel, 1024-d):")
    for name, req in requests:
        result = client.embed_with_retry(req)
        for emb in result.embeddings:
            norm = math.sqrt(sum(v * v for v in emb.vector))
            dim = len(emb.vector)
            print(f"         {name:<14} {emb.embedding_type:<22} dim={dim} norm={norm:.6f}")


def _render_page(pdf: Path, page: int, out: Path, dpi: int) -> None:
    import pymupdf

    with pymupdf.open(pdf) as doc:
        doc[page - 1].get_pixmap(dpi=dpi).save(out)


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Build the corpus, start the endpoints, backfill and query every use case."""
    from nova_devkit.emulator.launch import local_endpoints, use_dummy_credentials
    from pipelines.backfill import run_backfill
    from pipelines.config.compose import compose_backfill
    from pipelines.search import embed_query, open_qdrant, query_request, search_vector

    t0 = time.monotonic()
    root = Path(cfg.out_dir)
    if not cfg.reuse_corpus and root.exists():
        shutil.rmtree(root)
    # The index and runs are always rebuilt so that the demo shows a full backfill.
    for d in ("qdrant", "runs"):
        shutil.rmtree(root / d, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    print(f"[demo] generating the corpus under {root}/corpus ...", flush=True)
    manifest, queries = build_corpus(root)
    print(f"[demo] corpus and manifest ready in {time.monotonic() - t0:.1f}s: {manifest}")

    # The local endpoint needs no credentials, but boto3 insists on some: dummy ones, set before
    # Ray starts so that its workers inherit them.
    use_dummy_credentials()
    emu_cfg = EmulatorConfig(latency_ms=cfg.latency_ms, jitter_ms=cfg.jitter_ms)
    emu_cfg.quota.requests_per_minute = cfg.quota_requests_per_minute
    results: dict[str, Any] = {}
    with local_endpoints(emu_cfg) as ep:
        print(f"[demo] bedrock endpoint: {ep.bedrock_url}   s3 endpoint: {ep.s3_url}")
        _embed_one_of_each(root, ep.bedrock_url)
        for usecase in cfg.usecases:
            print(f"\n[demo] ===== {usecase} =====", flush=True)
            job = compose_backfill(
                [
                    f"usecase={usecase}",
                    f"manifest={manifest}",
                    *ep.pipeline_overrides(),
                    f"bedrock.quota.requests_per_minute={cfg.quota_requests_per_minute}",
                    f"qdrant.path={root / 'qdrant'}",
                    f"run_dir={root / 'runs'}",
                    *cfg.overrides,
                ]
            )
            result = run_backfill(job)
            entry: dict[str, Any] = {"report": str(result.report_path), "queries": []}
            client = open_qdrant(job.qdrant)
            try:
                for q in (q for q in queries if q.usecase == usecase):
                    req = query_request(
                        job.embedding, text=q.text, path=q.path, detail_level=q.detail_level
                    )
                    vector = embed_query(job.bedrock, job.embedding, req)
                    hits = search_vector(client, job.qdrant.collection, vector, top_k=3)
                    ok = bool(hits) and hits[0].payload.get("asset_id") == q.expect_asset
                    print(f"[demo] query ({job.embedding.query_purpose}): {q.label}")
                    for h in hits:
                        print(f"         {h.describe()}")
                    print(f"         -> top hit {'is' if ok else 'is NOT'} {q.expect_asset}")
                    entry["queries"].append({"query": q.label, "top_hit_ok": ok})
            finally:
                client.close()
            results[usecase] = entry
        stats = ep.emulator.stats()
    total = time.monotonic() - t0
    print(f"\n[demo] finished {len(cfg.usecases)} use cases in {total:.0f}s")
    print(
        f"[demo] endpoint saw {stats.get('requests')} requests, {stats.get('throttles')} throttled"
    )
    results["duration_s"] = total
    return results


ConfigStore.instance().store(name="demo_schema", node=DemoConfig)


@hydra.main(version_base=None, config_path=CONF_PATH, config_name="demo")
def main(dcfg: DictConfig) -> None:
    """``python -m nova_devkit.demo``: run the demo; exit 1 if a query missed its expected hit."""
    # botocore logs every credential lookup at INFO under Hydra's default logging.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, DemoConfig)
    results = run_demo(cfg)
    misses = [
        u
        for u, r in results.items()
        if isinstance(r, dict) and not all(q["top_hit_ok"] for q in r["queries"])
    ]
    if misses:
        print(f"[demo] queries that missed their expected hit: {misses}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
