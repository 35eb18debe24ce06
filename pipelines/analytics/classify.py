"""``python -m jobs.classify``: labels for new assets by a similarity-weighted vote of their top-K
labelled neighbours.

1. Each asset of the manifest is embedded with the use case's query purpose (``CLASSIFICATION``
   in ``product_classification``) and the parameters the labelled collection records, in Ray
   tasks of ``embed_batch`` assets (one synchronous call each: a text, a picture, or audio and
   video of at most 30 s; an asset that cannot be embedded gets an ``error`` and no label).
2. The collection is scanned in blocks (:mod:`.blocks`); one Ray task per block finds, for every
   asset, its best ``k`` labelled neighbours in that block (distinct assets, the asset itself
   excluded); the driver merges the blocks' candidates into each asset's top ``k``.
3. Vote: each label gets the sum of its neighbours' cosine similarities (negative ones count as
   zero); the best label wins, ``score`` is its share of the votes.

When the manifest has labels, ``classification.json`` holds accuracy, per-class precision and
recall and the confusion matrix (plotted to ``confusion.png``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.analytics.blocks import (
    VectorBlock,
    open_collection,
    put_blocks,
    run_folder,
    start_ray,
    unit_rows,
    validate_analytics,
    write_json,
)
from pipelines.config.schema import BedrockConfig, ClassifyJobConfig, EmbeddingConfig
from pipelines.core.errors import ConfigError


@dataclass
class ClassifyResult:
    """What :func:`run_classify` wrote and measured."""

    out_dir: Path
    predictions_path: Path
    summary: dict[str, Any]
    report_path: Path | None = None
    plot_path: Path | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)


def validate_classify(cfg: ClassifyJobConfig) -> None:
    from pipelines.config.validate import validate_bedrock

    validate_analytics(cfg)
    validate_bedrock(cfg.bedrock)
    if not cfg.manifest:
        raise ConfigError("manifest", "required: manifest=<parquet of the assets to label>")
    if not cfg.manifest.startswith("s3://") and not Path(cfg.manifest).is_file():
        raise ConfigError("manifest", f"no such file: {cfg.manifest}")
    if not 1 <= cfg.k <= 100:
        raise ConfigError("k", f"must be in 1..100, got {cfg.k}")
    if not 1 <= cfg.embed_batch <= 1000:
        raise ConfigError("embed_batch", f"must be in 1..1000, got {cfg.embed_batch}")
    if not cfg.label_field:
        raise ConfigError("label_field", "must name a payload field")


def load_assets(cfg: ClassifyJobConfig) -> list[dict[str, Any]]:
    """The manifest's rows: ``asset_id``, ``path`` (checked local file) or ``text``, ``label``
    (None when absent), ``error`` (why the row cannot be embedded)."""
    from pipelines.core.io import InputPolicy, InputRefused
    from pipelines.core.manifest import read_manifest

    assert cfg.manifest is not None
    try:
        table = read_manifest(cfg.manifest, cfg.bedrock.s3_endpoint_url)
    except (ValueError, OSError) as exc:
        raise ConfigError("manifest", str(exc)) from exc
    policy = InputPolicy.for_manifest(cfg.manifest)
    rows = []
    for row in table.to_pylist():
        out = {
            "asset_id": str(row["asset_id"]),
            "text": row.get("text"),
            "path": None,
            "label": row.get("label"),
            "error": None,
        }
        uri = row.get("uri")
        if out["text"] is None and uri:
            try:
                out["path"] = policy.check(str(uri))
            except InputRefused as exc:
                out["error"] = str(exc)
            if out["path"] and (out["path"].startswith("s3://") or not os.path.isfile(out["path"])):
                out["error"] = f"not a local file: {uri}"
        elif out["text"] is None:
            out["error"] = "neither text nor uri"
        rows.append(out)
    return rows


def embed_assets(
    rows: Sequence[Mapping[str, Any]], bedrock: BedrockConfig, emb: EmbeddingConfig
) -> list[tuple[list[float] | None, str | None]]:
    """Embed each row (a Ray task's share): ``(vector, None)`` or ``(None, error)``."""
    from pipelines.bedrock.client import NovaEmbeddingsClient
    from pipelines.search import query_request

    client = NovaEmbeddingsClient.from_config(bedrock, emb.model_id)
    out: list[tuple[list[float] | None, str | None]] = []
    for row in rows:
        if row.get("error"):
            out.append((None, str(row["error"])))
            continue
        try:
            request = (
                query_request(emb, text=row["text"])
                if row.get("text") is not None
                else query_request(emb, path=row["path"])
            )
            result = client.embed_with_retry(
                request,
                max_attempts=bedrock.max_attempts,
                base_backoff_s=bedrock.base_backoff_s,
                max_backoff_s=bedrock.max_backoff_s,
            )
            out.append((list(result.embeddings[0].vector), None))
        except Exception as exc:  # one asset's failure is its own (reported per row)
            out.append((None, f"{type(exc).__name__}: {exc}"))
    return out


def block_neighbours(
    block: VectorBlock, queries: np.ndarray, query_ids: Sequence[str], k: int
) -> list[list[tuple[float, str, Any]]]:
    """For each query row, its best ``k`` labelled points of ``block`` as ``(similarity,
    asset_id, label)``, one per asset, the query's own asset excluded."""
    labels = block.fields["label"]
    assets = block.fields["asset_id"]
    labelled = [i for i, lab in enumerate(labels) if lab is not None]
    out: list[list[tuple[float, str, Any]]] = [[] for _ in range(len(queries))]
    if not labelled or not len(queries):
        return out
    sims = queries @ block.vectors[labelled].T
    for q in range(len(queries)):
        best: dict[str, tuple[float, str, Any]] = {}
        for j in np.argsort(-sims[q]):
            i = labelled[int(j)]
            asset = str(assets[i])
            if asset == query_ids[q] or asset in best:
                continue
            best[asset] = (float(sims[q, j]), asset, labels[i])
            if len(best) >= k:
                break
        out[q] = list(best.values())
    return out


def merge_neighbours(found: list[tuple[float, str, Any]], k: int) -> list[tuple[float, str, Any]]:
    """The best ``k`` distinct assets of candidates from several blocks."""
    best: dict[str, tuple[float, str, Any]] = {}
    for cand in sorted(found, key=lambda c: -c[0]):
        if cand[1] not in best:
            best[cand[1]] = cand
    return list(best.values())[:k]


def vote(neighbours: Sequence[tuple[float, str, Any]]) -> tuple[Any, float]:
    """The label with the largest sum of similarities, and its share of the votes."""
    weights: dict[Any, float] = {}
    for sim, _, label in neighbours:
        weights[label] = weights.get(label, 0.0) + max(sim, 0.0)
    if not weights:
        return None, 0.0
    label = max(weights, key=lambda lab: (weights[lab], str(lab)))
    total = sum(weights.values())
    return label, (weights[label] / total if total > 0 else 0.0)


def measure(truth: Sequence[str], predicted: Sequence[str | None]) -> dict[str, Any]:
    """Accuracy, per-class precision and recall, and the confusion matrix (rows: true labels,
    columns: predicted; an asset left without a prediction counts as wrong)."""
    classes = sorted({*truth, *(p for p in predicted if p is not None)})
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        if p is not None:
            matrix[index[t], index[p]] += 1
    correct = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p)
    per_class = {}
    for c, i in index.items():
        tp = int(matrix[i, i])
        predicted_c = int(matrix[:, i].sum())
        actual_c = sum(1 for t in truth if t == c)
        per_class[c] = {
            "precision": round(tp / predicted_c, 4) if predicted_c else 0.0,
            "recall": round(tp / actual_c, 4) if actual_c else 0.0,
            "support": actual_c,
        }
    return {
        "assets": len(truth),
        "accuracy": round(correct / len(truth), 4) if truth else 0.0,
        "classes": classes,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def run_classify(cfg: ClassifyJobConfig) -> ClassifyResult:
    """Embed, find neighbours, vote, write (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from pipelines.core.credentials import apply_to_environment, resolve_credentials

    started = time.monotonic()
    validate_classify(cfg)
    credentials = resolve_credentials(cfg.bedrock)
    if credentials.dummy:
        apply_to_environment(credentials)
    rows = load_assets(cfg)
    target = open_collection(cfg)
    try:
        start_ray(cfg, credentials.env or None)
        embed_task = ray.remote(embed_assets).options(
            num_cpus=1, runtime_env={"env_vars": credentials.env} if credentials.env else None
        )
        chunks = [rows[i : i + cfg.embed_batch] for i in range(0, len(rows), cfg.embed_batch)]
        refs = [embed_task.remote(chunk, cfg.bedrock, target.embedding) for chunk in chunks]
        embedded = [pair for ref in refs for pair in ray.get(ref)]
        for row, (_, error) in zip(rows, embedded, strict=True):
            row["error"] = error
        ok = [i for i, (vec, _) in enumerate(embedded) if vec is not None]
        queries = (
            unit_rows(np.asarray([embedded[i][0] for i in ok], dtype=np.float32))
            if ok
            else np.zeros((0, target.embedding.dimension), np.float32)
        )
        query_ids = [rows[i]["asset_id"] for i in ok]
        queries_ref = ray.put(queries)
        task = ray.remote(block_neighbours).options(num_cpus=1)
        found: list[list[tuple[float, str, Any]]] = [[] for _ in ok]
        pending = []
        blocks = 0
        for block_ref in put_blocks(target.store, cfg.scan_batch, cfg.label_field):
            blocks += 1
            pending.append(task.remote(block_ref, queries_ref, query_ids, cfg.k))
            if len(pending) >= 8:  # a bounded number of blocks in flight
                _collect(pending.pop(0), found, cfg.k)
        for ref in pending:
            _collect(ref, found, cfg.k)
    finally:
        target.store.close()
    predictions = []
    neighbours_of = dict(zip(ok, found, strict=True))
    for i, row in enumerate(rows):
        nb = neighbours_of.get(i, [])
        label, score = vote(nb) if nb else (None, 0.0)
        predictions.append(
            {
                "asset_id": row["asset_id"],
                "predicted_label": None if label is None else str(label),
                "score": round(float(score), 6),
                "neighbours": [n[1] for n in nb],
                "label": None if row["label"] is None else str(row["label"]),
                "error": row["error"]
                or (None if nb or i not in neighbours_of else "no neighbours"),
            }
        )
    out, run_id = run_folder(cfg, "classify")
    predictions_path = out / "predictions.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            predictions,
            schema=pa.schema(
                [
                    ("asset_id", pa.string()),
                    ("predicted_label", pa.string()),
                    ("score", pa.float64()),
                    ("neighbours", pa.list_(pa.string())),
                    ("label", pa.string()),
                    ("error", pa.string()),
                ]
            ),
        ),
        predictions_path,
    )
    summary: dict[str, Any] = {
        "run_id": run_id,
        "collection": target.name,
        "physical_collection": target.physical,
        "manifest": cfg.manifest,
        "k": cfg.k,
        "query_purpose": target.embedding.query_purpose,
        "assets": len(rows),
        "labelled_by_vote": sum(1 for p in predictions if p["predicted_label"] is not None),
        "errors": sum(1 for p in predictions if p["error"]),
        "blocks": blocks,
        "duration_s": round(time.monotonic() - started, 2),
    }
    result = ClassifyResult(out, predictions_path, summary, predictions=predictions)
    judged = [p for p in predictions if p["label"] is not None]
    if judged:
        metrics = measure([p["label"] for p in judged], [p["predicted_label"] for p in judged])
        summary.update(metrics)
        result.plot_path = plot_confusion(metrics, out / "confusion.png", target.name)
    result.report_path = write_json(out / "classification.json", summary)
    return result


def _collect(ref: Any, found: list[list[tuple[float, str, Any]]], k: int) -> None:
    import ray

    for q, cands in enumerate(ray.get(ref)):
        found[q] = merge_neighbours(found[q] + cands, k)


def plot_confusion(metrics: Mapping[str, Any], path: Path, title: str) -> Path:
    """The confusion matrix as a heat map with counts (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = metrics["classes"]
    matrix = np.asarray(metrics["confusion_matrix"])
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (r, c), n in np.ndenumerate(matrix):
        if n:
            ax.text(c, r, str(n), ha="center", va="center", fontsize=8)
    ax.set_title(f"{title}: accuracy {metrics['accuracy']:.3f} ({metrics['assets']} assets)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_summary(result: ClassifyResult) -> str:
    s = result.summary
    lines = [
        f"{s['assets']} assets, {s['labelled_by_vote']} labelled by a vote of k={s['k']} "
        f"neighbours in {s['collection']!r} ({s['errors']} errors)"
    ]
    if "accuracy" in s:
        lines.append(f"accuracy {s['accuracy']:.3f} on {s['assets']} labelled assets")
        for c, m in s["per_class"].items():
            lines.append(
                f"  {c:<24} precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
                f"({m['support']})"
            )
    lines.append(f"predictions: {result.predictions_path}")
    if result.report_path:
        lines.append(f"report:      {result.report_path}")
    if result.plot_path:
        lines.append(f"plot:        {result.plot_path}")
    return "\n".join(lines)
