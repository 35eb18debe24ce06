"""``python -m jobs.evaluate``: retrieval quality of a collection on a query set, measured.

Each query of the set (a Parquet: ``text`` or ``uri``, ``asset_ids``, optional ``query_id`` and
``kind``; :func:`pipelines.evaluate.load_queries`) is run as ``jobs.search`` would run it (the same
query parts, mode, fusion and filters: :mod:`pipelines.search`), grouped by asset so that the
first ``k`` hits are ``k`` distinct assets. recall@k, MRR and nDCG@k
(:func:`pipelines.evaluate.score_ranked`) are computed over all queries, per query modality
(text, image, audio, video) and per query kind, printed as a table, written to
``evaluation.json`` with every query's ranked assets, and plotted to ``evaluation.png``.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.config.schema import EvaluateJobConfig
from pipelines.core.errors import ConfigError
from pipelines.evaluate import Metrics, breakdown, load_queries, score_ranked


@dataclass
class EvaluationResult:
    """The figures, and where they were written."""

    overall: Metrics
    by_modality: dict[str, Metrics] = field(default_factory=dict)
    by_kind: dict[str, Metrics] = field(default_factory=dict)
    report_path: Path | None = None
    plot_path: Path | None = None
    calls: int = 0


def validate_evaluate(cfg: EvaluateJobConfig) -> None:
    """Every check of ``jobs.evaluate``, before any call."""
    from pipelines.search import validate_query_job

    validate_query_job(cfg)
    if not cfg.queries:
        raise ConfigError("queries", "required: queries=<parquet of text|uri and asset_ids>")
    if not Path(cfg.queries).is_file():
        raise ConfigError("queries", f"no such file: {cfg.queries}")
    if not 1 <= cfg.k <= 100:
        raise ConfigError("k", f"must be in 1..100, got {cfg.k}")


def run_evaluation(cfg: EvaluateJobConfig, embedder: Any = None) -> EvaluationResult:
    """Rank every query's assets, measure, print, write ``evaluation.json`` and the plot."""
    from pipelines.search import (
        bedrock_embedder,
        flat_filter,
        open_target,
        part_of_file,
        query_parts,
    )

    started = time.monotonic()
    validate_evaluate(cfg)
    queries = load_queries(cfg.queries or "", key="queries")
    for q in queries:
        if q.uri is not None and not Path(q.uri).is_file():
            raise ConfigError("queries", f"query {q.query_id}: no such file: {q.uri}")
    if cfg.search.mode != "dense" and any(q.text is None for q in queries):
        raise ConfigError("search.mode", f"{cfg.search.mode} needs text queries only")
    target = open_target(cfg)
    calls = 0
    ranked: list[list[str]] = []
    try:
        embed = embedder or bedrock_embedder(cfg, target.embedding)
        for q in queries:
            files = {part_of_file(q.uri): q.uri} if q.uri is not None else {}
            parts, n = query_parts(cfg, target.embedding, q.text, files, embed)
            calls += n
            hits = (
                target.store.query(
                    parts,
                    limit=cfg.k,
                    where=flat_filter(cfg.filter),
                    fusion=cfg.search.fusion,
                    group_by="asset_id",
                    group_size=1,
                    candidates=max(cfg.search.candidates, cfg.k * 4),
                )
                if parts
                else []
            )
            ranked.append([str(h.payload.get("asset_id")) for h in hits])
    finally:
        target.store.close()
    result = EvaluationResult(
        overall=score_ranked(queries, ranked, cfg.k),
        by_modality=breakdown(queries, ranked, cfg.k, lambda q: q.modality),
        by_kind=breakdown(queries, ranked, cfg.k, lambda q: q.kind or q.modality),
        calls=calls,
    )
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    out = Path(cfg.out_dir or Path(cfg.run_dir) / cfg.usecase.name / f"evaluate-{run_id}")
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "run_id": run_id,
        "collection": cfg.qdrant.collection,
        "physical_collection": target.physical,
        "queries_file": cfg.queries,
        "k": cfg.k,
        "mode": cfg.search.mode,
        "fusion": cfg.search.fusion,
        "overall": result.overall.as_dict(),
        "by_modality": {m: v.as_dict() for m, v in result.by_modality.items()},
        "by_kind": {m: v.as_dict() for m, v in result.by_kind.items()},
        "queries": [
            {
                "query_id": q.query_id,
                "kind": q.kind,
                "modality": q.modality,
                "expected": q.expected,
                "ranked": r,
            }
            for q, r in zip(queries, ranked, strict=True)
        ],
        "bedrock_calls": calls,
        "duration_s": round(time.monotonic() - started, 2),
    }
    result.report_path = out / "evaluation.json"
    result.report_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    result.plot_path = plot(result, cfg.k, out / "evaluation.png", cfg.qdrant.collection)
    return result


def format_report(result: EvaluationResult) -> str:
    """The figures as a table: overall, per modality, per kind."""
    k = result.overall.k
    head = f"{'':<9} {'group':<22} {'queries':>7} {f'recall@{k}':>10} {'MRR':>7} {f'nDCG@{k}':>8}"
    lines = [head]

    def row(section: str, name: str, m: Metrics) -> None:
        lines.append(
            f"{section:<9} {name:<22} {m.queries:>7} {m.recall_at_k:>10.3f} {m.mrr:>7.3f} "
            f"{m.ndcg:>8.3f}"
        )

    row("overall", "all", result.overall)
    for name, m in result.by_modality.items():
        row("modality", name, m)
    for name, m in result.by_kind.items():
        row("kind", name, m)
    return "\n".join(lines)


def plot(result: EvaluationResult, k: int, path: Path, title: str) -> Path:
    """Bars of recall@k, MRR and nDCG@k per modality and per kind (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt
    import numpy as np

    groups = [
        ("modality", result.by_modality),
        ("kind", result.by_kind),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), squeeze=False)
    for ax, (name, metrics) in zip(axes[0], groups, strict=True):
        labels = list(metrics)
        x = np.arange(len(labels))
        for i, (label, values) in enumerate(
            (
                (f"recall@{k}", [m.recall_at_k for m in metrics.values()]),
                ("MRR", [m.mrr for m in metrics.values()]),
                (f"nDCG@{k}", [m.ndcg for m in metrics.values()]),
            )
        ):
            ax.bar(x + (i - 1) * 0.27, values, width=0.27, label=label)
        ax.set_xticks(x, [f"{lab}\n({metrics[lab].queries})" for lab in labels], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"per {name}")
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: {result.overall.queries} queries, k={k}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
