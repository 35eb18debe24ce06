"""``python -m jobs.duplicates``: near-duplicate groups over a collection.

The collection is scanned into blocks (:mod:`.blocks`); one Ray task per pair of blocks
(a block with itself included) compares their points and returns the pairs of distinct assets of
one modality whose cosine similarity reaches that modality's threshold
(``thresholds.<modality>``), keeping each asset pair's best segment pair. Two assets are
near-duplicates when any of their segments match so closely: a trimmed recording or clip still
shares most of its windows with the original. The driver joins the pairs into groups (connected
components, per modality) and writes ``duplicates.parquet`` (``group_id``, ``asset_id``,
``similarity``: the member's best similarity to another member, plus ``modality``, ``uri``,
``matches``: the members it matched) and ``duplicates.json``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
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
    validate_analytics,
    write_json,
)
from pipelines.config.schema import DuplicatesJobConfig
from pipelines.core.errors import ConfigError

Pair = tuple[str, str]


@dataclass
class DuplicatesResult:
    """What :func:`run_duplicates` found and wrote."""

    out_dir: Path
    duplicates_path: Path
    report_path: Path
    summary: dict[str, Any]
    groups: list[dict[str, Any]]


def validate_duplicates(cfg: DuplicatesJobConfig) -> None:
    validate_analytics(cfg)
    for name, value in dataclasses.asdict(cfg.thresholds).items():
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"thresholds.{name}", f"must be in (0, 1], got {value}")
    if not 0.0 < cfg.min_coverage <= 1.0:
        raise ConfigError("min_coverage", f"must be in (0, 1], got {cfg.min_coverage}")


class Match:
    """What the comparisons found of one asset pair: the best segment similarity, and which
    segments of each asset matched some segment of the other."""

    __slots__ = ("modality", "segments", "similarity")

    def __init__(self, similarity: float, modality: str) -> None:
        self.similarity = similarity
        self.modality = modality
        self.segments: tuple[set[int], set[int]] = (set(), set())

    def merge(self, other: Match) -> None:
        self.similarity = max(self.similarity, other.similarity)
        self.segments[0].update(other.segments[0])
        self.segments[1].update(other.segments[1])


def block_pairs(
    a: VectorBlock, b: VectorBlock, same: bool, thresholds: Mapping[str, float]
) -> dict[Pair, Match]:
    """Asset pairs of one modality between blocks ``a`` and ``b`` with segments at or above the
    modality's threshold (asset ids in order), with their best similarity and matched segments."""
    out: dict[Pair, Match] = {}
    if not len(a) or not len(b):
        return out
    sims = a.vectors @ b.vectors.T
    floor = min(thresholds.values())
    rows, cols = np.nonzero(sims >= floor)
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        if same and j <= i:
            continue
        mod_a, mod_b = a.fields["modality"][i], b.fields["modality"][j]
        if mod_a != mod_b:
            continue
        x, y = str(a.fields["asset_id"][i]), str(b.fields["asset_id"][j])
        sim = float(sims[i, j])
        if x == y or sim < thresholds.get(str(mod_a), 1.01):
            continue
        seg_x, seg_y = a.fields["segment_index"][i] or 0, b.fields["segment_index"][j] or 0
        if x > y:
            x, y, seg_x, seg_y = y, x, seg_y, seg_x
        match = out.setdefault((x, y), Match(sim, str(mod_a)))
        match.similarity = max(match.similarity, sim)
        match.segments[0].add(int(seg_x))
        match.segments[1].add(int(seg_y))
    return out


def covered(match: Match, pair: Pair, segments: Mapping[str, int], min_coverage: float) -> bool:
    """Whether the matched segments cover ``min_coverage`` of either asset (a trimmed copy is
    covered by its original; two long documents sharing one page are not duplicates)."""
    return any(
        len(found) >= min_coverage * max(1, segments.get(asset, 1))
        for asset, found in zip(pair, match.segments, strict=True)
    )


def group_pairs(
    pairs: Mapping[Pair, tuple[float, str]], uris: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Connected components of the pairs: groups of two or more assets, biggest first, each
    member with its best similarity to another member and the members it matched."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in pairs:
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    members: dict[str, list[str]] = {}
    for x in parent:
        members.setdefault(find(x), []).append(x)
    best: dict[str, float] = {}
    matches: dict[str, list[str]] = {}
    modality: dict[str, str] = {}
    for (x, y), (sim, mod) in pairs.items():
        for m, other in ((x, y), (y, x)):
            best[m] = max(best.get(m, -1.0), sim)
            matches.setdefault(m, []).append(other)
            modality[m] = mod
    groups: list[dict[str, Any]] = []
    for root in sorted(members, key=lambda r: (-len(members[r]), r)):
        group = sorted(members[root])
        groups.append(
            {
                "group_id": len(groups),
                "modality": modality[group[0]],
                "members": [
                    {
                        "asset_id": m,
                        "similarity": round(best[m], 6),
                        "uri": uris.get(m),
                        "matches": sorted(matches[m]),
                    }
                    for m in group
                ],
            }
        )
    return groups


def run_duplicates(cfg: DuplicatesJobConfig) -> DuplicatesResult:
    """Compare every pair of blocks on Ray, group, write (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    started = time.monotonic()
    validate_duplicates(cfg)
    thresholds = dataclasses.asdict(cfg.thresholds)
    target = open_collection(cfg)
    matches: dict[Pair, Match] = {}
    uris: dict[str, Any] = {}
    segments: dict[str, set[int]] = {}
    points = 0
    try:
        start_ray(cfg)
        task = ray.remote(block_pairs).options(num_cpus=1)
        refs: list[Any] = []
        pending: list[Any] = []
        for ref in put_blocks(target.store, cfg.scan_batch):
            # The new block against itself and every block before it.
            pending.append(task.remote(ref, ref, True, thresholds))
            pending.extend(task.remote(old, ref, False, thresholds) for old in refs)
            refs.append(ref)
            while len(pending) > 16:  # a bounded number of comparisons in flight
                _merge(ray.get(pending.pop(0)), matches)
        for ref in pending:
            _merge(ray.get(ref), matches)
        wanted = {asset for pair in matches for asset in pair}
        for ref in refs:  # the candidates' uris and segment counts, one block at a time
            block = ray.get(ref)
            points += len(block)
            f = block.fields
            for asset, uri, seg in zip(f["asset_id"], f["uri"], f["segment_index"], strict=True):
                if str(asset) in wanted:
                    uris[str(asset)] = uri
                    segments.setdefault(str(asset), set()).add(int(seg or 0))
    finally:
        target.store.close()
    counts = {asset: len(found) for asset, found in segments.items()}
    pairs = {
        pair: (m.similarity, m.modality)
        for pair, m in matches.items()
        if covered(m, pair, counts, cfg.min_coverage)
    }
    groups = group_pairs(pairs, uris)
    out, run_id = run_folder(cfg, "duplicates")
    rows = [
        {
            "group_id": g["group_id"],
            "asset_id": m["asset_id"],
            "similarity": m["similarity"],
            "modality": g["modality"],
            "uri": m["uri"],
            "matches": m["matches"],
        }
        for g in groups
        for m in g["members"]
    ]
    schema = pa.schema(
        [
            ("group_id", pa.int64()),
            ("asset_id", pa.string()),
            ("similarity", pa.float64()),
            ("modality", pa.string()),
            ("uri", pa.string()),
            ("matches", pa.list_(pa.string())),
        ]
    )
    path = out / "duplicates.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    by_modality: dict[str, dict[str, int]] = {}
    for g in groups:
        entry = by_modality.setdefault(g["modality"], {"groups": 0, "assets": 0})
        entry["groups"] += 1
        entry["assets"] += len(g["members"])
    summary = {
        "run_id": run_id,
        "collection": target.name,
        "physical_collection": target.physical,
        "thresholds": thresholds,
        "points": points,
        "blocks": len(refs),
        "min_coverage": cfg.min_coverage,
        "candidate_pairs": len(matches),
        "pairs": len(pairs),
        "groups": len(groups),
        "assets_in_groups": len(rows),
        "by_modality": by_modality,
        "duplicate_groups": groups,
        "duration_s": round(time.monotonic() - started, 2),
    }
    report = write_json(out / "duplicates.json", summary)
    return DuplicatesResult(out, path, report, summary, groups)


def _merge(found: Mapping[Pair, Match], matches: dict[Pair, Match]) -> None:
    for key, match in found.items():
        if key in matches:
            matches[key].merge(match)
        else:
            matches[key] = match


def format_summary(result: DuplicatesResult) -> str:
    s = result.summary
    lines = [
        f"{s['groups']} near-duplicate groups ({s['assets_in_groups']} assets) among "
        f"{s['points']} points of {s['collection']!r}"
    ]
    for g in result.groups[:20]:
        members = ", ".join(f"{m['asset_id']} ({m['similarity']:.3f})" for m in g["members"])
        lines.append(f"  group {g['group_id']} [{g['modality']}]: {members}")
    if len(result.groups) > 20:
        lines.append(f"  ... {len(result.groups) - 20} more in the report")
    lines.append(f"duplicates: {result.duplicates_path}")
    lines.append(f"report:     {result.report_path}")
    return "\n".join(lines)
