"""``python -m jobs.cluster``: topic clusters over a collection's vectors (embedded with the
``CLUSTERING`` purpose: the ``topic_clustering`` use case).

1. The collection is scanned into blocks (:mod:`.blocks`); the driver keeps a reservoir sample
   of at most ``sample`` vectors, read one block at a time.
2. The number of clusters is ``clusters``, or estimated: k-means on the sample for every k in
   ``min_clusters..max_clusters``, the k with the best silhouette (cosine) wins.
3. k-means (scikit-learn) on the sample seeds the centres; Lloyd's refinement then runs over every
   vector, one Ray task per block returning its per-cluster sums and counts, until the centres
   settle or ``iterations`` passes are done.
4. A last pass assigns each point (one Ray task per block), with its cosine similarity to its
   centre and a 2-D position (PCA of the sample): ``assignments.parquet`` is written as the
   blocks come back; ``clusters.parquet`` has each cluster's size and its ``representatives``
   members nearest the centre; ``clusters.json`` the summary (with the adjusted Rand index
   against the payload's labels when the points have them), ``clusters.png`` the picture.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from dataclasses import dataclass
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
from pipelines.config.schema import ClusterJobConfig
from pipelines.core.errors import ConfigError

PLOT_POINTS = 5000  # at most this many points in the picture (a uniform sample)


@dataclass
class ClusterResult:
    """What :func:`run_cluster` found and wrote."""

    out_dir: Path
    clusters_path: Path
    assignments_path: Path
    report_path: Path
    plot_path: Path
    summary: dict[str, Any]


def validate_cluster(cfg: ClusterJobConfig) -> None:
    validate_analytics(cfg)
    if cfg.clusters is not None and not 2 <= cfg.clusters <= 1000:
        raise ConfigError("clusters", f"must be in 2..1000 or null, got {cfg.clusters}")
    if cfg.min_clusters < 2:
        raise ConfigError("min_clusters", f"must be at least 2, got {cfg.min_clusters}")
    if not cfg.min_clusters <= cfg.max_clusters <= 100:
        raise ConfigError(
            "max_clusters",
            f"must be in min_clusters ({cfg.min_clusters})..100, got {cfg.max_clusters}",
        )
    if not 10 <= cfg.sample <= 200_000:
        raise ConfigError("sample", f"must be in 10..200000, got {cfg.sample}")
    if not 0 <= cfg.iterations <= 200:
        raise ConfigError("iterations", f"must be in 0..200, got {cfg.iterations}")
    if not 1 <= cfg.representatives <= 100:
        raise ConfigError("representatives", f"must be in 1..100, got {cfg.representatives}")


def partial_sums(block: VectorBlock, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One Lloyd step's share of a block: per-cluster sums of its vectors and counts."""
    nearest = np.argmax(block.vectors @ centres.T, axis=1)
    sums = np.zeros_like(centres)
    np.add.at(sums, nearest, block.vectors)
    return sums, np.bincount(nearest, minlength=len(centres))


def assign(
    block: VectorBlock, centres: np.ndarray, mean: np.ndarray, components: np.ndarray
) -> dict[str, list[Any]]:
    """Each point's cluster, its similarity to the centre, and its 2-D position."""
    sims = block.vectors @ centres.T
    nearest = np.argmax(sims, axis=1)
    xy = (block.vectors - mean) @ components.T
    return {
        "point_id": block.point_ids,
        "asset_id": [None if a is None else str(a) for a in block.fields["asset_id"]],
        "segment_index": block.fields["segment_index"],
        "modality": block.fields["modality"],
        "label": [None if lab is None else str(lab) for lab in block.fields["label"]],
        "cluster": nearest.tolist(),
        "similarity": sims[np.arange(len(nearest)), nearest].round(6).tolist(),
        "x": xy[:, 0].round(5).tolist(),
        "y": xy[:, 1].round(5).tolist(),
    }


def estimate_clusters(
    sample: np.ndarray, low: int, high: int, seed: int
) -> tuple[int, dict[int, float]]:
    """The k in ``low..high`` with the best cosine silhouette of k-means on the sample."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    scores: dict[int, float] = {}
    for k in range(low, min(high, len(sample) - 1) + 1):
        labels = KMeans(k, n_init=5, random_state=seed).fit_predict(sample)
        if len(set(labels)) < 2:
            continue
        scores[k] = round(float(silhouette_score(sample, labels, metric="cosine")), 4)
    if not scores:
        raise ConfigError("clusters", f"cannot estimate from {len(sample)} sampled vectors")
    return max(scores, key=lambda k: (scores[k], -k)), scores


def run_cluster(cfg: ClusterJobConfig) -> ClusterResult:
    """Sample, estimate, refine on Ray, assign, write (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    started = time.monotonic()
    validate_cluster(cfg)
    rng = np.random.default_rng(cfg.seed)
    target = open_collection(cfg)
    try:
        start_ray(cfg)
        refs = []
        reservoir: list[np.ndarray] = []
        seen = 0
        for ref in put_blocks(target.store, cfg.scan_batch):
            refs.append(ref)
            for vector in ray.get(ref).vectors:  # one block in the driver at a time
                seen += 1
                if len(reservoir) < cfg.sample:
                    reservoir.append(vector)
                else:
                    j = int(rng.integers(0, seen))
                    if j < cfg.sample:
                        reservoir[j] = vector
    finally:
        target.store.close()
    if seen < 3:
        raise ConfigError("qdrant.collection", f"{target.name!r} holds {seen} vectors: too few")
    sample = np.asarray(reservoir, dtype=np.float32)
    scores: dict[int, float] = {}
    if cfg.clusters is not None:
        if cfg.clusters >= seen:
            raise ConfigError("clusters", f"{cfg.clusters} clusters for {seen} vectors")
        k = cfg.clusters
    else:
        k, scores = estimate_clusters(sample, cfg.min_clusters, cfg.max_clusters, cfg.seed)
    centres = unit_rows(
        KMeans(min(k, len(sample)), n_init=10, random_state=cfg.seed).fit(sample).cluster_centers_
    )
    step = ray.remote(partial_sums).options(num_cpus=1)
    passes = 0
    for passes in range(1, cfg.iterations + 1):  # noqa: B007 - the count is reported
        centres_ref = ray.put(centres)
        sums = np.zeros_like(centres)
        counts = np.zeros(len(centres), dtype=np.int64)
        for s, c in ray.get([step.remote(ref, centres_ref) for ref in refs]):
            sums += s
            counts += c
        moved = np.where(counts[:, None] > 0, unit_rows(sums), centres)
        shift = float(np.max(np.linalg.norm(moved - centres, axis=1)))
        centres = moved
        if shift < 1e-5:
            break
    pca = PCA(2, random_state=cfg.seed).fit(sample)
    out, run_id = run_folder(cfg, "cluster")
    assignments_path = out / "assignments.parquet"
    task = ray.remote(assign).options(num_cpus=1)
    centres_ref = ray.put(centres)
    mean_ref, comp_ref = ray.put(pca.mean_.astype(np.float32)), ray.put(pca.components_)
    pending = [task.remote(ref, centres_ref, mean_ref, comp_ref) for ref in refs]
    sizes = Counter[int]()
    best: dict[int, list[tuple[float, str, str | None]]] = {}
    label_counts: dict[int, Counter[str]] = {}
    truth: list[str] = []
    found: list[int] = []
    plot_rows: list[tuple[float, float, int]] = []
    keep_share = min(1.0, PLOT_POINTS / seen)
    writer: pq.ParquetWriter | None = None
    try:
        for ref in pending:
            part = ray.get(ref)
            table = pa.table(part)
            if writer is None:
                writer = pq.ParquetWriter(assignments_path, table.schema)
            writer.write_table(table)
            for pid, asset, label, cluster, sim, x, y in zip(
                part["point_id"],
                part["asset_id"],
                part["label"],
                part["cluster"],
                part["similarity"],
                part["x"],
                part["y"],
                strict=True,
            ):
                sizes[cluster] += 1
                heap = best.setdefault(cluster, [])
                item = (sim, pid, asset)
                if len(heap) < cfg.representatives:
                    heapq.heappush(heap, item)
                else:
                    heapq.heappushpop(heap, item)
                if label is not None:
                    label_counts.setdefault(cluster, Counter())[label] += 1
                    truth.append(label)
                    found.append(cluster)
                if rng.random() < keep_share:
                    plot_rows.append((x, y, cluster))
    finally:
        if writer is not None:
            writer.close()
    clusters = []
    for c in range(len(centres)):
        reps = sorted(best.get(c, []), reverse=True)
        top = label_counts.get(c, Counter()).most_common(3)
        clusters.append(
            {
                "cluster": c,
                "size": sizes.get(c, 0),
                "representatives": [r[2] for r in reps],
                "representative_points": [r[1] for r in reps],
                "representative_similarities": [round(r[0], 6) for r in reps],
                "top_labels": [f"{label} ({n})" for label, n in top],
            }
        )
    clusters_path = out / "clusters.parquet"
    pq.write_table(pa.Table.from_pylist(clusters), clusters_path)
    summary: dict[str, Any] = {
        "run_id": run_id,
        "collection": target.name,
        "physical_collection": target.physical,
        "points": seen,
        "blocks": len(refs),
        "sample": len(sample),
        "clusters": len(centres),
        "estimated": cfg.clusters is None,
        "silhouette_by_k": scores,
        "refinement_passes": passes,
        "sizes": [cl["size"] for cl in clusters],
        "cluster_details": clusters,
        "duration_s": round(time.monotonic() - started, 2),
    }
    if truth:
        from sklearn.metrics import adjusted_rand_score

        summary["labelled_points"] = len(truth)
        summary["adjusted_rand_index"] = round(float(adjusted_rand_score(truth, found)), 4)
    plot_path = plot_clusters(plot_rows, pca.transform(centres), out / "clusters.png", summary)
    report = write_json(out / "clusters.json", summary)
    return ClusterResult(out, clusters_path, assignments_path, report, plot_path, summary)


def plot_clusters(
    points: list[tuple[float, float, int]], centres: np.ndarray, path: Path, summary: Any
) -> Path:
    """The points in the sample's first two principal components, coloured by cluster, with
    the centres marked (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    if points:
        xy = np.asarray([(x, y) for x, y, _ in points])
        ax.scatter(xy[:, 0], xy[:, 1], c=[c for _, _, c in points], cmap="tab20", s=14, alpha=0.8)
    ax.scatter(centres[:, 0], centres[:, 1], marker="X", s=120, c="black")
    for c, (x, y) in enumerate(centres):
        ax.annotate(str(c), (x, y), textcoords="offset points", xytext=(6, 6), fontsize=9)
    title = f"{summary['collection']}: {summary['clusters']} clusters, {summary['points']} points"
    if "adjusted_rand_index" in summary:
        title += f", ARI {summary['adjusted_rand_index']:.3f}"
    ax.set_title(title)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_summary(result: ClusterResult) -> str:
    s = result.summary
    how = "estimated" if s["estimated"] else "chosen"
    lines = [f"{s['clusters']} clusters ({how}) over {s['points']} points of {s['collection']!r}"]
    if "adjusted_rand_index" in s:
        lines.append(f"adjusted Rand index against the labels: {s['adjusted_rand_index']:.3f}")
    for cl in s["cluster_details"]:
        reps = ", ".join(str(r) for r in cl["representatives"])
        labels = f"  [{', '.join(cl['top_labels'])}]" if cl["top_labels"] else ""
        lines.append(f"  cluster {cl['cluster']:>3}: {cl['size']:>6} points; {reps}{labels}")
    lines.append(f"clusters:    {result.clusters_path}")
    lines.append(f"assignments: {result.assignments_path}")
    lines.append(f"report:      {result.report_path}")
    lines.append(f"plot:        {result.plot_path}")
    return "\n".join(lines)
