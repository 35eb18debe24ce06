"""What a Matryoshka migration copies of the journal (``pipelines.migrate._copy_journal``)."""

from __future__ import annotations

from pathlib import Path

from pipelines.config.compose import compose_migrate
from pipelines.core.journal import Entry, Journal
from pipelines.migrate import _copy_journal, _key


def test_points_kept_partial_or_whole_carry_the_new_fingerprint(tmp_path: Path) -> None:
    # A partial asset's points are copied like an embedded one's: its entry must say they were
    # made under the new fingerprint, or the next backfill would embed it again.
    cfg = compose_migrate([f"state.path={tmp_path}", "qdrant.collection=docs"])
    old, new = _key(cfg, "docs_v1"), _key(cfg, "docs_v2")
    journal = Journal(tmp_path)
    journal.record(
        old,
        "r1",
        [
            Entry("whole", "v1", "text", "fp-old", "embedded", points=3),
            Entry("part", "v1", "document", "fp-old", "partial", "validation_exception", True, 2),
            Entry("failed", "v1", "text", "fp-old", "dead_lettered", "empty_text", True, 0),
        ],
    )
    journal.close()

    copied = _copy_journal(
        cfg, "docs_v1", "docs_v2", {"text": "fp-new", "document": "fp-new"}, "r2"
    )

    journal = Journal(tmp_path)
    try:
        got = {e.asset_id: e for chunk in journal.entries(new) for e in chunk}
    finally:
        journal.close()
    assert copied == 3
    assert got["whole"].fingerprint == got["part"].fingerprint == "fp-new"
    assert (got["part"].outcome, got["part"].points, got["part"].permanent) == ("partial", 2, True)
    # A dead letter has no points to copy: its fingerprint says what it failed under.
    assert got["failed"].fingerprint == "fp-old"
