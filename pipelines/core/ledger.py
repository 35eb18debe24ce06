"""Per-asset accounting: every manifest row ends embedded, skipped or dead-lettered.

The driver feeds the ledger every row that comes out of the pipeline (embedded or dead letter)
and every write acknowledgement. An asset is *embedded* only when every one of its segments was
written; otherwise it is dead-lettered with the first failure's stage, code and message, and its
partial points are removed so that the index never holds half an asset.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipelines.core import codes
from pipelines.modalities import Registry, Usage, current

OUTCOMES = (
    "embedded",
    "skipped_unchanged",
    "skipped_dead_letter",
    "skipped_modality",
    "dead_lettered",
    # Only after an aborted run: neither embedded nor failed; the next run takes it up.
    "pending",
)


@dataclass
class Failure:
    stage: str
    code: str
    message: str
    segment_index: int | None = None


@dataclass
class AssetState:
    """What is known of one asset while the run goes on."""

    asset_id: str
    uri: str | None
    modality: str
    content_version: str | None = None
    expected_segments: int | None = None
    segments_written: set[int] = field(default_factory=set)
    points_written: int = 0
    failures: list[Failure] = field(default_factory=list)
    outcome: str | None = None
    bedrock_calls: int = 0
    throttles: int = 0
    retries: int = 0
    # What the embedded segments used (the modality's cost rule prices it).
    usage: Usage = field(default_factory=Usage)

    @property
    def complete(self) -> bool:
        return (
            not self.failures
            and self.expected_segments is not None
            and len(self.segments_written) >= self.expected_segments
        )


@dataclass
class Progress:
    """Running totals of a run, kept as rows arrive (never recomputed over every asset)."""

    total: int = 0
    settled: int = 0
    failed: int = 0
    points: int = 0
    bedrock_calls: int = 0
    throttles: int = 0


class AssetLedger:
    """Tracks every asset of a run from plan to outcome."""

    def __init__(self, modalities: Registry | None = None) -> None:
        self.modalities = modalities or current()
        self.assets: dict[str, AssetState] = {}
        self.progress = Progress()
        self._completed: list[str] = []

    def add(
        self, asset_id: str, uri: str | None, modality: str, content_version: str | None = None
    ) -> None:
        self.assets[asset_id] = AssetState(asset_id, uri, modality, content_version)
        self.progress.total += 1

    def skip(self, asset_id: str, outcome: str) -> None:
        if outcome not in OUTCOMES or not outcome.startswith("skipped"):
            raise ValueError(f"not a skip outcome: {outcome!r}")
        self.assets[asset_id].outcome = outcome
        self.progress.total -= 1

    def account(self, batch: pa.Table) -> None:
        """Account for one batch of write acknowledgements (the last stage's output)."""
        for row in batch.to_pylist():
            self.observe(row)
            if row.get("error_code") is None:
                self.written(row["asset_id"], row["segment_index"])

    def observe(self, row: dict[str, Any]) -> None:
        """Account for one row out of the embed stage (before it is written)."""
        st = self.assets[row["asset_id"]]
        count = row.get("segment_count")
        if count and count > 0:
            st.expected_segments = int(count)
        calls = int(row.get("bedrock_calls") or 0)
        throttles = int(row.get("throttles") or 0)
        st.bedrock_calls += calls
        st.throttles += throttles
        st.retries += int(row.get("retries") or 0)
        self.progress.bedrock_calls += calls
        self.progress.throttles += throttles
        if row.get("error_code") is not None:
            if not st.failures and not st.complete:
                self.progress.failed += 1
                self.progress.settled += 1
            st.failures.append(
                Failure(
                    row.get("error_stage") or "unknown",
                    row["error_code"],
                    row.get("error_message") or "",
                    row.get("segment_index"),
                )
            )
            return
        st.usage.input_tokens += int(row.get("input_tokens") or 0)
        # Usage for the cost estimate is counted once per segment (its first embedding row).
        if row.get("bedrock_calls"):
            modality = self.modalities.get(st.modality)
            if modality is not None:
                st.usage.add(modality.usage(row))

    def written(self, asset_id: str, segment_index: int, points: int = 1) -> None:
        st = self.assets[asset_id]
        was_complete = st.complete
        st.segments_written.add(int(segment_index))
        st.points_written += points
        self.progress.points += points
        if st.complete and not was_complete:
            self.progress.settled += 1
            self._completed.append(asset_id)

    def drain_completed(self) -> list[AssetState]:
        """Assets whose every segment reached the store since the last call (to journal)."""
        done, self._completed = self._completed, []
        return [self.assets[a] for a in done if self.assets[a].complete]

    def fail(self, asset_id: str, stage: str, code: str, message: str) -> None:
        st = self.assets[asset_id]
        if not st.failures:
            self.progress.failed += 1
            if not st.complete:
                self.progress.settled += 1
        st.failures.append(Failure(stage, code, message))

    def finalize(self, pending: bool = False) -> list[str]:
        """Decide every outcome; returns the asset ids whose partial points must be deleted.

        ``pending`` (the run was aborted): an asset that neither completed nor failed is
        ``pending`` rather than dead-lettered ``incomplete``.
        """
        partial: list[str] = []
        for st in self.assets.values():
            if st.outcome is not None:
                continue
            if st.complete:
                st.outcome = "embedded"
                continue
            if pending and not st.failures:
                st.outcome = "pending"
                if st.points_written:
                    partial.append(st.asset_id)
                continue
            if not st.failures:
                got = len(st.segments_written)
                st.failures.append(
                    Failure(
                        "write",
                        codes.INCOMPLETE,
                        f"{got} of {st.expected_segments} segments reached the index",
                    )
                )
            st.outcome = "dead_lettered"
            if st.points_written:
                partial.append(st.asset_id)
        return partial

    def outcome_counts(self) -> Counter[str]:
        return Counter(st.outcome or "pending" for st in self.assets.values())

    def dead_letters(self) -> list[dict[str, Any]]:
        """One row per failure of every dead-lettered asset."""
        rows = []
        for st in self.assets.values():
            if st.outcome != "dead_lettered":
                continue
            for f in st.failures:
                rows.append(
                    {
                        "asset_id": st.asset_id,
                        "uri": st.uri,
                        "modality": st.modality,
                        "stage": f.stage,
                        "error_code": f.code,
                        "message": f.message,
                        "segment_index": f.segment_index,
                    }
                )
        return rows
