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
    # b wrote one point before failing: removed (all-or-nothing, the default).
    assert [pair for chunk in ledger.unkept() for pair in chunk] == [("b", "v1")]
    assert [s for chunk in ledger.missing_segments() for s in chunk] == []
    settled = {s.asset_id: s for chunk in ledger.with_failures() for s in chunk}
    assert settled["b"].error_code == codes.VALIDATION_EXCEPTION and settled["b"].changed
    assert settled["b"].outcome == "dead_lettered" and not settled["b"].kept


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


def _failed(asset: str, index: int, count: int, code: str) -> dict[str, Any]:
    error = RecordError("embed", code, f"segment {index}", segment_index=index, segment_count=count)
    return dead_letter_row({"asset_id": asset, "modality": "document"}, error)


def _whole(asset: str, code: str) -> dict[str, Any]:
    return dead_letter_row(
        {"asset_id": asset, "modality": "document"}, RecordError("decode", code, "x")
    )


@pytest.mark.parametrize("keep", [True, False], ids=["keep", "drop"])
def test_keep_partial_keeps_the_written_segments_of_an_asset_whose_others_failed(
    tmp_path: Path, keep: bool
) -> None:
    ledger = RunLedger(tmp_path / "ledger.sqlite", keep_partial=keep)
    ids = ("perm", "mixed", "whole", "none", "lost", "fine")
    ledger.plan_rows([(i, a, None, "document", "v1", TODO, int(a == "perm"), None)
                      for i, a in enumerate(ids)])  # fmt: skip
    rows = [
        # 0 and 2 written, 1 refused for good.
        _ack("perm", 0, 3), _failed("perm", 1, 3, codes.VALIDATION_EXCEPTION), _ack("perm", 2, 3),
        # 0 written, 1 refused for good, 2 throttled at the deadline (transient).
        _ack("mixed", 0, 3), _failed("mixed", 1, 3, codes.VALIDATION_EXCEPTION),
        _failed("mixed", 2, 3, codes.THROTTLING_EXCEPTION),
        # One segment written, then a failure of the whole file (or of a whole part).
        _ack("whole", 0, 3), _whole("whole", codes.DECODER_CRASHED),
        # Nothing written.
        _failed("none", 0, 2, codes.VALIDATION_EXCEPTION),
        _failed("none", 1, 2, codes.VALIDATION_EXCEPTION),
        # 0 written, 1 failed, 2 never heard of.
        _ack("lost", 0, 3), _failed("lost", 1, 3, codes.VALIDATION_EXCEPTION),
        _ack("fine", 0, 1),
    ]  # fmt: skip
    ledger.account(EMBEDDED.table(rows))
    ledger.finalize(PricesConfig())
    outcome = {a: ledger.view(a).outcome for a in ids}
    partial = {"perm", "mixed"} if keep else set()
    assert outcome == {
        a: "embedded" if a == "fine" else "partial" if a in partial else "dead_lettered"
        for a in ids
    }
    totals = {t["outcome"]: t for t in ledger.totals()}
    assert sum(t["rows"] for t in totals.values()) == len(ids)
    # Points the collection keeps: the partial assets' written segments, and the embedded one.
    assert totals["embedded"]["points_written"] == 1
    if keep:
        assert (totals["partial"]["rows"], totals["partial"]["points_written"]) == (2, 3)
    assert dict(pair for chunk in ledger.kept() for pair in chunk) == {
        "fine": 1, **({"perm": 2, "mixed": 1} if keep else {})
    }  # fmt: skip
    # Not kept: the points written of this version leave the collection.
    unkept = {a for chunk in ledger.unkept() for a, _ in chunk}
    assert unkept == {"whole", "lost"} | ({"perm", "mixed"} - partial)
    # A partial asset's failed segments hold no point either (an earlier run's are removed).
    missing = [s for chunk in ledger.missing_segments() for s in chunk]
    assert missing == ([("perm", "v1", [1]), ("mixed", "v1", [1, 2])] if keep else [])
    # Every failure is a dead letter, saying what became of its asset.
    dead = [(r["asset_id"], r["segment_index"], r["asset_outcome"]) for r in ledger.dead_letters()]
    assert dead == [
        ("perm", 1, outcome["perm"]),
        ("mixed", 1, outcome["mixed"]),
        ("mixed", 2, outcome["mixed"]),
        ("whole", -1, "dead_lettered"),
        ("none", 0, "dead_lettered"),
        ("none", 1, "dead_lettered"),
        ("lost", 1, "dead_lettered"),
    ]
    assert sum(ledger.dead_letters_by_code().values()) == len(dead)
    # The journal's code: a partial asset's first transient failure decides the next run.
    settled = {s.asset_id: s for chunk in ledger.with_failures() for s in chunk}
    assert settled["perm"].error_code == codes.VALIDATION_EXCEPTION
    assert settled["mixed"].error_code == (
        codes.THROTTLING_EXCEPTION if keep else codes.VALIDATION_EXCEPTION
    )
    assert settled["perm"].kept == keep and settled["perm"].changed
    assert settled["perm"].points == 2


def test_a_copy_of_a_partial_leader_is_partial_too(tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path / "ledger.sqlite", keep_partial=True)
    ledger.plan_rows(
        [
            (0, "lead", None, "document", "sha256:1", TODO, 0, None),
            (1, "copy", None, "document", "sha256:1", COPY, 0, "lead"),
        ]
    )
    ledger.account(
        EMBEDDED.table([_ack("lead", 0, 2), _failed("lead", 1, 2, codes.VALIDATION_EXCEPTION)])
    )
    ledger.flush()
    assert ledger.keepable("lead") and not ledger.view("lead").complete
    ledger.copy_partial("copy", "lead", points=1)
    ledger.finalize(PricesConfig())
    assert ledger.view("copy").outcome == "partial" == ledger.view("lead").outcome
    (copied,) = [r for r in ledger.dead_letters() if r["asset_id"] == "copy"]
    assert copied["segment_index"] == 1 and copied["message"].startswith("same content as 'lead'")
    assert dict(pair for chunk in ledger.kept() for pair in chunk) == {"lead": 1, "copy": 1}
