"""Planning a run: the manifest, streamed, against what the collection already holds.

:func:`plan_backfill` reads the manifest batch by batch
(:func:`pipelines.core.manifest.iter_manifest`) and, for every row, decides what the run does
with it (see :mod:`pipelines.core.incremental`):

- ``skipped_modality``: the use case does not take its modality;
- ``skipped_unchanged`` / ``skipped_dead_letter``: the journal holds it, same content and
  parameters (embedded, or kept partial, or failed for a permanent reason);
- ``copy``: another row of this run has the same content (``sha256:`` version): embedded once,
  then its points are copied;
- ``todo``: to decode and embed.

Every row gets a row in the run ledger (:class:`pipelines.core.ledger.RunLedger`, on disk), the
rows to embed go to ``todo.parquet`` and the copies to ``copies.parquet`` in the run folder. The
driver holds one batch at a time: a manifest of tens of millions of rows is planned in bounded
memory.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.core.console import Console
from pipelines.core.errors import ConfigError, ManifestError
from pipelines.core.incremental import check_fingerprints, content_versions, diff
from pipelines.core.journal import Journal
from pipelines.core.ledger import COPY, TODO, AssetView, RunLedger, Settled
from pipelines.core.rows import ASSET

if TYPE_CHECKING:
    from pipelines.config.schema import BackfillJobConfig, SegmentationConfig
    from pipelines.stores import VectorStore

TODO_FILE = "todo.parquet"
COPIES_FILE = "copies.parquet"
LEDGER_FILE = "ledger.sqlite"


@dataclass
class BackfillPlan:
    """What a run will do: the ledger (every row), and the files of rows to embed and to copy."""

    run_id: str
    run_dir: Path
    ledger: RunLedger
    todo_path: Path
    todo_rows: int = 0
    copies_path: Path | None = None
    copy_rows: int = 0
    manifest_rows: int = 0
    changed: int = 0
    # The journal's key of the physical collection, and the run's fingerprint per modality.
    collection: str = ""
    fingerprints: dict[str, str] = field(default_factory=dict)

    def source(self, split: SegmentationConfig | None = None) -> Any:
        """The rows to embed, as the pipeline's source (read window by window). With ``split``
        (local segmentation), large assets are decoded in parts (``pipelines/core/plan.py``)."""
        import functools

        from pipelines.core.plan import asset_blocks
        from pipelines.core.runner import ParquetSource

        return ParquetSource(ASSET, self.todo_path, cut=functools.partial(asset_blocks, seg=split))

    def copy_batches(self) -> Iterator[list[dict[str, Any]]]:
        """The rows whose points are copied from another row's, in batches (dict rows)."""
        if self.copies_path is None or not self.copies_path.exists():
            return
        with pq.ParquetFile(self.copies_path) as file:
            for batch in file.iter_batches(batch_size=1024):
                yield batch.to_pylist()


def settle_copies(
    plan: BackfillPlan,
    copy: Callable[[AssetView, dict[str, Any]], int],
    settled: Callable[[list[Settled]], None] = lambda done: None,
) -> None:
    """Give each ``copy`` row its leader's points (``copy(leader, row)`` makes them and returns
    how many), or fail it with the leader's reason; ``settled`` gets each batch of completed
    copies (to journal them). A leader that ends ``partial`` (``usecase.partial_assets=keep``)
    gives its copies its written points and its failures: they end ``partial`` too."""
    from pipelines.core import codes

    ledger = plan.ledger
    ledger.flush()
    for rows in plan.copy_batches():
        done: list[Settled] = []
        for row in rows:
            follower = row["asset_id"]
            source = ledger.view(ledger.leader_of(follower))
            if not source.complete and ledger.keepable(source.asset_id):
                ledger.copy_partial(follower, source.asset_id, copy(source, row))
                continue
            if not source.complete:
                why = source.failures[0] if source.failures else None
                ledger.fail(
                    follower,
                    why.stage if why else "embed",
                    why.code if why else codes.INCOMPLETE,
                    f"same content as {source.asset_id!r}, which was not embedded"
                    + (f": {why.message}" if why else ""),
                )
                continue
            done.append(ledger.settle_copy(follower, source.expected or 0, copy(source, row)))
        settled(done)
    ledger.flush()


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def plan_backfill(
    cfg: BackfillJobConfig,
    console: Console | None = None,
    journal: Journal | None = None,
    run_id: str | None = None,
    store: VectorStore | None = None,
    collection: str = "",
) -> BackfillPlan:
    """Read the manifest and decide every row (see the module docstring). With a journal, rows
    whose content and parameters are those the collection already holds are skipped; with
    ``cfg.verify`` and an open ``store``, only when the store holds their points."""
    from pipelines.core.ids import fingerprint

    say = (console or Console("backfill")).say
    run_id = run_id or new_run_id()
    fingerprints = {
        m: fingerprint(cfg.embedding, cfg.segmentation, m) for m in cfg.usecase.modalities
    }
    wanted = pa.array(list(cfg.usecase.modalities), pa.string())
    if journal is not None:
        check_fingerprints(journal, collection, fingerprints, list(cfg.usecase.modalities))
    run_dir = Path(cfg.run_dir) / cfg.usecase.name / run_id
    made = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    run_dir.mkdir(parents=True, exist_ok=True)
    verify = cfg.verify and store is not None and store.exists()

    plan = BackfillPlan(
        run_id,
        run_dir,
        RunLedger(run_dir / LEDGER_FILE, keep_partial=cfg.usecase.partial_assets == "keep"),
        run_dir / TODO_FILE,
        copies_path=run_dir / COPIES_FILE,
        collection=collection,
        fingerprints=fingerprints,
    )
    todo_out = _Writer(plan.todo_path)
    copies_out = _Writer(run_dir / COPIES_FILE)
    try:
        _plan_rows(cfg, plan, journal, store if verify else None, wanted, todo_out, copies_out)
    except (ManifestError, ConfigError):
        # A manifest or configuration refused before any work leaves no run folder behind.
        plan.ledger.close()
        todo_out.close()
        copies_out.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        for folder in made[1:]:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        todo_out.close()
        copies_out.close()
    say(
        f"manifest {cfg.manifest}: {plan.manifest_rows} rows, {plan.todo_rows} to embed "
        f"for use case {cfg.usecase.name!r} into collection {cfg.qdrant.collection!r}"
        + (f" ({plan.changed} changed)" if plan.changed else "")
        + (f" ({plan.copy_rows} with the same content as another)" if plan.copy_rows else "")
    )
    return plan


def _plan_rows(
    cfg: BackfillJobConfig,
    plan: BackfillPlan,
    journal: Journal | None,
    store: VectorStore | None,
    wanted: pa.Array,
    todo_out: _Writer,
    copies_out: _Writer,
) -> None:
    """Decide the manifest's rows, batch by batch (see :func:`plan_backfill`)."""
    from pipelines.core.io import InputPolicy
    from pipelines.core.manifest import iter_manifest

    assert cfg.manifest is not None
    collection, fingerprints = plan.collection, plan.fingerprints
    # Content versions are read only where the job may read (the decoder dead-letters the rest).
    inputs = InputPolicy.for_job(cfg)
    for offset, table in iter_manifest(cfg.manifest, cfg.bedrock.s3_endpoint_url):
        if cfg.limit is not None:
            if offset >= cfg.limit:
                break
            table = table.slice(0, cfg.limit - offset)
        plan.manifest_rows += table.num_rows
        seq = pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64))
        table = table.append_column("seq", seq)
        take = pc.fill_null(pc.is_in(table.column("modality"), value_set=wanted), False)
        rows = _decide_other_modalities(table.filter(pc.invert(take)))
        todo = content_versions(table.filter(take), cfg.bedrock.s3_endpoint_url, inputs)
        decisions: dict[str, str] = {}
        changed: set[str] = set()
        if journal is not None:
            held = None
            if store is not None and todo.num_rows:
                held = store.count_by_asset(todo.column("asset_id").to_pylist())
            d = diff(
                journal,
                collection,
                todo,
                fingerprints,
                retry_dead_letters=cfg.retry_dead_letters,
                held_points=held,
                keep_partial=plan.ledger.keep_partial,
            )
            decisions.update(dict.fromkeys(d.unchanged, "skipped_unchanged"))
            decisions.update(dict.fromkeys(d.dead_letter, "skipped_dead_letter"))
            changed = set(d.changed)
        leaders = _same_content(plan.ledger, todo, decisions)
        for r in todo.select(["seq", "asset_id", "uri", "modality", "content_version"]).to_pylist():
            a = r["asset_id"]
            decision = decisions.get(a) or (COPY if a in leaders else TODO)
            rows.append(
                (
                    r["seq"],
                    a,
                    r["uri"],
                    r["modality"],
                    r["content_version"],
                    decision,
                    int(a in changed),
                    leaders.get(a),
                )
            )
        duplicate = plan.ledger.plan_rows(rows)
        if duplicate is not None:
            first = plan.ledger.first_seq(duplicate)
            again = next(r[0] for r in rows if r[1] == duplicate)
            raise ManifestError(
                f"duplicate asset_id {duplicate!r}: rows {first} and {again} have the same id",
                row=again,
                column="asset_id",
            )
        ids = todo.column("asset_id")
        embed = pc.invert(
            pc.is_in(ids, value_set=pa.array(list(decisions) + list(leaders), pa.string()))
        )
        todo = todo.drop_columns(["seq"])
        plan.todo_rows += todo_out.write(todo.filter(embed))
        if leaders:
            plan.copy_rows += copies_out.write(
                todo.filter(pc.is_in(ids, value_set=pa.array(list(leaders), pa.string())))
            )
        plan.changed += len(changed)


def _decide_other_modalities(table: pa.Table) -> list[tuple[Any, ...]]:
    return [
        (
            r["seq"],
            r["asset_id"],
            r["uri"],
            r["modality"],
            r["content_version"],
            "skipped_modality",
            0,
            None,
        )
        for r in table.select(["seq", "asset_id", "uri", "modality", "content_version"]).to_pylist()
    ]


def _same_content(ledger: RunLedger, todo: pa.Table, decided: dict[str, str]) -> dict[str, str]:
    """Rows to embed whose content an earlier row of this run has (``sha256:`` versions only: a
    hash of the content itself): asset id -> that row's asset id (embedded once, then copied)."""
    candidates = [
        (r["asset_id"], r["modality"], r["content_version"])
        for r in todo.select(["asset_id", "modality", "content_version"]).to_pylist()
        if r["asset_id"] not in decided
        and r["content_version"]
        and r["content_version"].startswith("sha256:")
    ]
    return ledger.leaders(candidates)


class _Writer:
    """Appends asset tables to a Parquet file, created with the first rows (none: no file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> int:
        if not table.num_rows:
            return 0
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, ASSET.schema)
        self.writer.write_table(table.cast(ASSET.schema), row_group_size=8192)
        return table.num_rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
