"""Planning streams the manifest: rows decided batch by batch, errors named by file position."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config.compose import compose_backfill
from pipelines.core.errors import ManifestError
from pipelines.planning import plan_backfill


def _cfg(tmp_path: Path, ids: list[str]) -> object:
    texts = [f"text of {a} " * (1 + i % 3) for i, a in enumerate(ids)]
    texts[-1] = texts[0]  # the same content as the first row: embedded once, then copied
    pq.write_table(pa.table({"asset_id": ids, "text": texts}), tmp_path / "m.parquet")
    return compose_backfill(
        [
            "usecase=mixed_media",
            f"manifest={tmp_path / 'm.parquet'}",
            f"run_dir={tmp_path / 'runs'}",
        ]
    )


def test_rows_are_planned_in_batches_into_the_ledger_and_the_todo_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pipelines.core.manifest.BATCH_ROWS", 4)
    ids = [f"a{i}" for i in range(10)]
    plan = plan_backfill(_cfg(tmp_path, ids))  # type: ignore[arg-type]
    assert (plan.manifest_rows, plan.todo_rows, plan.copy_rows) == (10, 9, 1)
    assert pq.read_table(plan.todo_path).column("asset_id").to_pylist() == ids[:-1]
    assert list(plan.ledger.asset_ids()) == ids
    assert plan.ledger.leader_of("a9") == "a0"
    assert [r["asset_id"] for rows in plan.copy_batches() for r in rows] == ["a9"]


def test_a_duplicate_in_another_batch_is_named_by_both_rows_and_leaves_no_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pipelines.core.manifest.BATCH_ROWS", 4)
    ids = [f"a{i}" for i in range(10)]
    ids[6] = "a1"
    with pytest.raises(ManifestError) as err:
        plan_backfill(_cfg(tmp_path, ids))  # type: ignore[arg-type]
    assert (err.value.row, err.value.column) == (6, "asset_id")
    assert "rows 1 and 6" in str(err.value)
    assert not (tmp_path / "runs").exists()
