"""The run ledger: outcomes decided on disk, from acknowledgements, in bounded memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.config.schema import PricesConfig
from pipelines.core import codes
from pipelines.core.errors import RecordError
from pipelines.core.ledger import COPY, TODO, RunLedger
from pipelines.core.rows import EMBEDDED, dead_letter_row


def _ack(asset: str, index: int, count: int, **extra: Any) -> dict[str, Any]:
    return {
        "asset_id": asset,
        "modality": "text",
        "segment_index": index,
        "segment_count": count,
        "input_text": "x" * 40,
        "bedrock_calls": 1,
        **extra,
    }


@pytest.fixture
def ledger(tmp_path: Path) -> RunLedger:
    ledger = RunLedger(tmp_path / "ledger.sqlite")
    ledger.plan_rows(
        [
            (0, "a", None, "text", "v1", TODO, 0, None),
            (1, "b", None, "text", "v1", TODO, 1, None),
            (2, "c", None, "text", "v1", "skipped_unchanged", 0, None),
            (3, "d", None, "text", "v1", COPY, 0, "a"),
            (4, "e", None, "text", "v1", TODO, 0, None),
        ]
    )
    return ledger


def test_an_asset_is_complete_when_every_segment_is_written(ledger: RunLedger) -> None:
    ledger.account(EMBEDDED.table([_ack("a", 0, 2)]))
    assert ledger.flush() == []
    ledger.account(EMBEDDED.table([_ack("a", 1, 2), _ack("a", 1, 2)]))  # a repeated ack
    done = ledger.flush()
    assert [(s.asset_id, s.outcome, s.points, s.changed) for s in done] == [
        ("a", "embedded", 2, False)
    ]
    assert ledger.progress.settled == 1
    assert ledger.view("a").complete


def test_failures_dead_letter_the_asset_and_keep_every_reason(ledger: RunLedger) -> None:
    failed = dead_letter_row(
        {"asset_id": "b", "modality": "text"},
        RecordError("embed", codes.VALIDATION_EXCEPTION, "too long", segment_index=1),
    )
    ledger.account(EMBEDDED.table([_ack("b", 0, 2), failed]))
    assert ledger.flush() == []
    ledger.finalize(PricesConfig())
    rows = list(ledger.dead_letters())
    # b failed; a and e (never seen) and d (a copy never settled) did not complete either.
    assert [(r["asset_id"], r["error_code"]) for r in rows] == [
        ("a", codes.INCOMPLETE),
        ("b", codes.VALIDATION_EXCEPTION),
        ("d", codes.INCOMPLETE),
        ("e", codes.INCOMPLETE),
    ]
    # b wrote one point before failing: removed as partial.
    assert [pair for chunk in ledger.partial() for pair in chunk] == [("b", "v1")]
    settled = {s.asset_id: s for chunk in ledger.dead_lettered() for s in chunk}
    assert settled["b"].error_code == codes.VALIDATION_EXCEPTION and settled["b"].changed


def test_an_aborted_run_leaves_unfinished_assets_pending(ledger: RunLedger) -> None:
    ledger.account(EMBEDDED.table([_ack("a", 0, 1)]))
    ledger.finalize(PricesConfig(), pending=True)
    counts = {(t["outcome"]): t["rows"] for t in ledger.totals()}
    assert counts == {"embedded": 1, "pending": 3, "skipped_unchanged": 1}
    assert list(ledger.dead_letters()) == []


def test_totals_price_usage_and_a_copy_settles_from_its_leader(ledger: RunLedger) -> None:
    ledger.account(EMBEDDED.table([_ack("a", 0, 1), _ack("e", 0, 1)]))
    ledger.flush()
    copied = ledger.settle_copy("d", expected=1, points=1)
    assert copied.outcome == "embedded"
    assert ledger.leader_of("d") == "a"
    ledger.finalize(PricesConfig(text_per_1k_tokens=1.0))
    totals = {t["outcome"]: t for t in ledger.totals()}
    assert totals["embedded"]["rows"] == 3
    assert totals["embedded"]["bedrock_calls"] == 2
    # 40 characters are 10 estimated tokens per asset, at $1 per 1,000.
    assert totals["embedded"]["cost_usd"] == pytest.approx(0.02)


def test_a_duplicate_asset_id_is_found_across_batches(ledger: RunLedger) -> None:
    assert ledger.plan_rows([(9, "z", None, "text", None, TODO, 0, None)]) is None
    assert (
        ledger.plan_rows(
            [
                (10, "y", None, "text", None, TODO, 0, None),
                (11, "a", None, "text", None, TODO, 0, None),
            ]
        )
        == "a"
    )
    assert ledger.first_seq("a") == 0


def test_same_content_is_led_by_its_first_row(tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path / "l.sqlite")
    first = ledger.leaders([("a", "text", "sha256:1"), ("b", "text", "sha256:2")])
    second = ledger.leaders([("c", "text", "sha256:1"), ("d", "image", "sha256:1")])
    assert first == {} and second == {"c": "a"}
