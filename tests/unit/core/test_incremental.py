"""What a run does with an asset the journal holds ``partial`` (``usecase.partial_assets``)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.core import codes
from pipelines.core.incremental import diff
from pipelines.core.journal import Entry, Journal

FP = {"document": "abc|dim=1024"}


def _partial(asset_id: str, code: str) -> Entry:
    permanent = codes.is_permanent(code)
    return Entry(asset_id, "v1", "document", FP["document"], "partial", code, permanent, 2)


@pytest.mark.parametrize(
    ("code", "keep", "retry", "decision"),
    [
        # Every failure permanent: its good points are held, the rest would fail again.
        (codes.VALIDATION_EXCEPTION, True, False, "unchanged"),
        # A transient failure: embedded again (the whole asset).
        (codes.THROTTLING_EXCEPTION, True, False, "todo"),
        # retry_dead_letters retries permanent failures, partial ones too.
        (codes.VALIDATION_EXCEPTION, True, True, "todo"),
        # A use case back to drop holds no partial asset: embedded again, all-or-nothing.
        (codes.VALIDATION_EXCEPTION, False, False, "todo"),
    ],
    ids=["permanent", "transient", "retry-dead-letters", "drop"],
)
def test_a_partial_asset_is_skipped_only_when_its_failures_would_repeat(
    tmp_path: Path, code: str, keep: bool, retry: bool, decision: str
) -> None:
    journal = Journal(tmp_path)
    journal.record("c", "r1", [_partial("doc", code), _partial("new", code)])
    table = pa.table(
        {
            "asset_id": ["doc", "new"],
            "modality": ["document", "document"],
            "content_version": ["v1", "v2"],  # "new" changed: embedded again, whatever it held
        }
    )
    out = diff(journal, "c", table, FP, retry_dead_letters=retry, keep_partial=keep)
    assert out.unchanged == (["doc"] if decision == "unchanged" else [])
    assert out.dead_letter == []
    todo = out.todo.column("asset_id").to_pylist()
    assert todo == (["new"] if decision == "unchanged" else ["doc", "new"])
    # What the collection holds of it (same version or not) is replaced once this run decides.
    assert out.changed == {a: "v1" for a in todo}
    journal.close()
