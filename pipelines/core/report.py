"""The run report (``report.json``): counts by outcome and modality, Bedrock usage, cost, speed."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from pipelines.config.schema import PricesConfig
from pipelines.core.ledger import AssetLedger, AssetState
from pipelines.modalities import Registry


def asset_cost(st: AssetState, prices: PricesConfig, modalities: Registry) -> float:
    """On-demand cost of one asset's calls, by its modality's cost rule."""
    modality = modalities.get(st.modality)
    return modality.cost(st.usage, prices) if modality is not None else 0.0


def build_report(
    ledger: AssetLedger,
    prices: PricesConfig,
    duration_s: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Aggregate the ledger into the report's fields (see the architecture doc)."""

    def blank() -> dict[str, Any]:
        return {
            "rows": 0,
            "embedded": 0,
            "skipped_unchanged": 0,
            "skipped_dead_letter": 0,
            "skipped_modality": 0,
            "dead_lettered": 0,
            "pending": 0,
            "segments": 0,
            "points_written": 0,
            "bedrock_calls": 0,
            "throttled": 0,
            "retries": 0,
            "input_tokens": 0,
            "cost_usd": 0.0,
        }

    total = blank()
    by_modality: dict[str, dict[str, Any]] = defaultdict(blank)
    for st in ledger.assets.values():
        cost = asset_cost(st, prices, ledger.modalities)
        for agg in (total, by_modality[st.modality]):
            agg["rows"] += 1
            agg[st.outcome or "dead_lettered"] += 1
            agg["segments"] += len(st.segments_written)
            agg["points_written"] += st.points_written if st.outcome == "embedded" else 0
            agg["bedrock_calls"] += st.bedrock_calls
            agg["throttled"] += st.throttles
            agg["retries"] += st.retries
            agg["input_tokens"] += st.usage.input_tokens
            agg["cost_usd"] += cost
            for note in st.usage.notes if st.outcome == "embedded" else ():
                # Assets embedded in a way worth saying (e.g. audio_only_video: as audio).
                agg.setdefault("notes", {})[note] = agg.get("notes", {}).get(note, 0) + 1
    total["cost_usd"] = round(total["cost_usd"], 6)
    for agg in by_modality.values():
        agg["cost_usd"] = round(agg["cost_usd"], 6)
    report: dict[str, Any] = {
        **total,
        "duration_s": round(duration_s, 3),
        "throughput": {
            "rows_per_s": round(total["rows"] / duration_s, 3) if duration_s > 0 else None,
            "points_per_s": round(total["points_written"] / duration_s, 3)
            if duration_s > 0
            else None,
            "bedrock_calls_per_min": round(total["bedrock_calls"] / duration_s * 60, 2)
            if duration_s > 0
            else None,
        },
        "by_modality": dict(sorted(by_modality.items())),
    }
    if extra:
        report.update(extra)
    return report


def write_report(report: dict[str, Any], run_dir: Path) -> Path:
    path = run_dir / "report.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
    return path
