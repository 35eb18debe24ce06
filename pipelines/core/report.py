"""The run report (``report.json``): counts by outcome and modality, Bedrock usage, cost, speed."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from pipelines.core.ledger import RunLedger

_COUNTS = (
    "rows",
    "embedded",
    "skipped_unchanged",
    "skipped_dead_letter",
    "skipped_modality",
    "dead_lettered",
    "partial",
    "pending",
    "segments",
    "points_written",
    "bedrock_calls",
    "throttled",
    "retries",
    "input_tokens",
    "cost_usd",
)


def build_report(
    ledger: RunLedger, duration_s: float, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Aggregate the ledger (after ``finalize``) into the report's fields (see the architecture
    doc); sums are taken in SQL, never over per-asset objects."""

    def blank() -> dict[str, Any]:
        return {k: 0.0 if k == "cost_usd" else 0 for k in _COUNTS}

    total = blank()
    by_modality: dict[str, dict[str, Any]] = defaultdict(blank)
    for row in ledger.totals():
        for agg in (total, by_modality[row["modality"]]):
            agg["rows"] += row["rows"]
            agg[row["outcome"]] += row["rows"]
            for key in _COUNTS[_COUNTS.index("segments") :]:
                agg[key] += row[key] or 0
    for modality, notes in ledger.notes().items():
        # Assets embedded in a way worth saying (e.g. audio_only_video: as audio).
        by_modality[modality]["notes"] = notes
        for note, n in notes.items():
            total.setdefault("notes", {})[note] = total.get("notes", {}).get(note, 0) + n
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
