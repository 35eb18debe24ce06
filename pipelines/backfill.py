"""The backfill job: a Parquet manifest in, vectors in a store, a report and a dead-letter file out.

Plan, build, drive, finish:

- :func:`plan_backfill` reads and validates the manifest and gives every row a ledger entry;
- :func:`backfill_pipeline` arranges the stages (decode, embed, write; or service embed, write);
- :func:`pipelines.core.runner.run_pipeline` drives them, the ledger accounting for every
  acknowledgement;
- :func:`finish_backfill` removes partial assets, checks the counts and writes the report.

See ``docs/architecture.md``.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.collections import aim_collection, record_if_missing
from pipelines.config.schema import BackfillJobConfig
from pipelines.config.validate import validate_backfill
from pipelines.core import codes, preflight
from pipelines.core.console import Console
from pipelines.core.credentials import apply_to_environment, resolve_credentials
from pipelines.core.errors import InfrastructureError
from pipelines.core.incremental import check_fingerprints, content_versions, diff, entries_of
from pipelines.core.journal import Journal
from pipelines.core.ledger import AssetLedger, Progress
from pipelines.core.report import build_report, write_report
from pipelines.core.runner import BlocksSource, Pipeline, run_pipeline
from pipelines.core.stage import Resources
from pipelines.stores import VectorStore, open_store


@dataclass
class BackfillResult:
    """What a run produced: where its files are and the report's contents."""

    run_dir: Path
    report_path: Path
    dead_letter_path: Path
    report: dict[str, Any] = field(default_factory=dict)
    # The process's exit code (docs/scheduled-backfills.md): 0 done, 3 aborted, 5 too many dead
    # letters.
    exit_code: int = 0


@dataclass
class BackfillPlan:
    """The manifest rows to embed, and a ledger entry for every row."""

    run_id: str
    run_dir: Path
    todo: pa.Table
    ledger: AssetLedger
    # The journal's key of the physical collection, and the run's fingerprint per modality.
    collection: str = ""
    fingerprints: dict[str, str] = field(default_factory=dict)
    # asset id -> the version the collection held before this run (removed once replaced)
    changed: dict[str, str | None] = field(default_factory=dict)
    # Identical content under another asset id: embedded once, then copied (follower -> leader,
    # and the follower's manifest row).
    copies: dict[str, str] = field(default_factory=dict)
    copy_rows: dict[str, dict[str, Any]] = field(default_factory=dict)


Arrangement = Callable[[BackfillJobConfig, BackfillPlan, VectorStore], Pipeline]


def run_backfill(cfg: BackfillJobConfig, arrange: Arrangement | None = None) -> BackfillResult:
    """Run one backfill end to end; raises ConfigError / ManifestError before any work.

    ``arrange`` builds the pipeline (default :func:`backfill_pipeline`); a benchmark passes one
    that swaps in an instrumented stage. An infrastructure failure during the run (the store, the
    credentials, Bedrock's access) ends it cleanly: the report says ``aborted`` and why, and the
    result's ``exit_code`` is 3 (see ``docs/scheduled-backfills.md``).
    """
    started = time.monotonic()
    validate_backfill(cfg)
    console = Console("backfill", quota_rpm=cfg.bedrock.quota.requests_per_minute)
    # Credentials before anything reads S3 or calls Bedrock: refuses here, in one line, when none
    # are found and an endpoint is AWS; dummy ones for endpoints on this machine.
    credentials = resolve_credentials(cfg.bedrock)
    if credentials.dummy:
        apply_to_environment(credentials)
        console.say(credentials.describe() + " (driver and every worker)")
    # The alias (qdrant.collection) -> the physical collection this run writes; a first run
    # creates <name>_v1 behind the alias (docs/migrations.md).
    cfg = aim_collection(cfg, console.say)
    journal = Journal(cfg.state.path)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    key = collection_key(cfg)
    try:
        journal.acquire(key, run_id, cfg.state.lock_stale_after_s)
        try:
            result = _run_locked(cfg, arrange, journal, run_id, console, credentials.env, started)
        finally:
            journal.release(key, run_id)
    finally:
        journal.close()
    if result.report.get("status") in ("done", "failed"):
        record_if_missing(cfg)
    return result


def _run_locked(
    cfg: BackfillJobConfig,
    arrange: Arrangement | None,
    journal: Journal,
    run_id: str,
    console: Console,
    worker_env: dict[str, str],
    started: float,
) -> BackfillResult:
    plan = plan_backfill(cfg, console, journal, run_id)
    store = open_store(cfg.qdrant, cfg.embedding, cfg.segmentation)
    store.open()
    journal.start_run(run_id, plan.collection)
    figures: dict[str, Any] = {}
    abort: str | None = None
    try:
        # The store first: an unreachable store or a dimension clash fails before Bedrock.
        store.ensure_collection()
        preflight.check_store(store)
        if plan.todo.num_rows:
            if cfg.segmentation.mode == "service":
                preflight.check_staging(cfg)
            figures["preflight_calls"] = preflight.check_bedrock(cfg)
            pipeline = (arrange or backfill_pipeline)(cfg, plan, store)
            console.say(f"pipeline: {pipeline.describe()}")
            console.watch(lambda: _status(plan.ledger, pipeline))
            accounting = _Accounting(plan, store, journal)
            try:
                # Blocks as they come (the store batches its own upserts): the accounting, the
                # journal and the console follow the run instead of waiting for full batches.
                by_stage = run_pipeline(
                    pipeline, cfg.ray, accounting, batch_size=None, worker_env=worker_env
                )
                figures.update({k: v for stage in by_stage.values() for k, v in stage.items()})
            finally:
                console.stop()
                accounting.flush(force=True)
    except Exception as exc:
        cause = infrastructure_cause(exc)
        if cause is None:
            raise
        abort = f"{type(cause).__name__}: {cause}"
        console.say(f"aborted: {abort}")
    try:
        return finish_backfill(cfg, plan, store, figures, started, console, journal, abort)
    finally:
        store.close()


def collection_key(cfg: BackfillJobConfig) -> str:
    """The journal's name for the physical collection: the store's address and the collection.

    Call it with a config :func:`pipelines.collections.aim_collection` aimed (``run_backfill``
    does), whose ``qdrant.collection`` is the physical name the alias resolves to.
    """
    where = cfg.qdrant.url or str(Path(cfg.qdrant.path or ".").resolve())
    return f"{where}::{cfg.qdrant.physical_collection or cfg.qdrant.collection}"


def infrastructure_cause(exc: BaseException) -> InfrastructureError | None:
    """The :class:`InfrastructureError` behind ``exc`` (Ray wraps what a worker raised)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, InfrastructureError):
            return current
        seen.add(id(current))
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    return None


def plan_backfill(
    cfg: BackfillJobConfig,
    console: Console | None = None,
    journal: Journal | None = None,
    run_id: str | None = None,
) -> BackfillPlan:
    """Read the manifest; every row gets a ledger entry now, so nothing can vanish later. With a
    journal, rows whose content and parameters are those the collection already holds are
    skipped (see :mod:`pipelines.core.incremental`)."""
    from pipelines.core.ids import fingerprint
    from pipelines.core.manifest import load_manifest

    assert cfg.manifest is not None
    say = (console or Console("backfill")).say
    manifest = load_manifest(cfg.manifest, cfg.bedrock.s3_endpoint_url)
    if cfg.limit is not None:
        manifest = manifest.slice(0, cfg.limit)
    run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    run_dir = Path(cfg.run_dir) / cfg.usecase.name / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    collection = collection_key(cfg)
    fingerprints = {
        m: fingerprint(cfg.embedding, cfg.segmentation, m) for m in cfg.usecase.modalities
    }

    wanted = set(cfg.usecase.modalities)
    modality = manifest.column("modality").to_pylist()
    keep = [i for i, m in enumerate(modality) if m in wanted]
    todo = manifest.take(pa.array(keep, type=pa.int64())) if keep else manifest.slice(0, 0)
    todo = content_versions(todo, cfg.bedrock.s3_endpoint_url)
    ids, versions_col = todo.column("asset_id"), todo.column("content_version")
    versions = dict(zip(ids.to_pylist(), versions_col.to_pylist(), strict=True))
    ledger = AssetLedger()
    for row in manifest.select(["asset_id", "uri", "modality"]).to_pylist():
        ledger.add(row["asset_id"], row["uri"], row["modality"], versions.get(row["asset_id"]))
        if row["modality"] not in wanted:
            ledger.skip(row["asset_id"], "skipped_modality")

    changed: dict[str, str | None] = {}
    if journal is not None:
        check_fingerprints(journal, collection, fingerprints, list(wanted))
        held = None
        if cfg.verify:
            held = _held_points(cfg, todo)
        d = diff(
            journal,
            collection,
            todo,
            fingerprints,
            retry_dead_letters=cfg.retry_dead_letters,
            held_points=held,
        )
        for asset_id in d.unchanged:
            ledger.skip(asset_id, "skipped_unchanged")
        for asset_id in d.dead_letter:
            ledger.skip(asset_id, "skipped_dead_letter")
        todo, changed = d.todo, d.changed
    todo, copies, copy_rows = _same_content(todo)
    say(
        f"manifest {cfg.manifest}: {manifest.num_rows} rows, {todo.num_rows} to embed "
        f"for use case {cfg.usecase.name!r} into collection {cfg.qdrant.collection!r}"
        + (f" ({len(changed)} changed)" if changed else "")
        + (f" ({len(copies)} with the same content as another)" if copies else "")
    )
    return BackfillPlan(
        run_id, run_dir, todo, ledger, collection, fingerprints, changed, copies, copy_rows
    )


def _same_content(
    todo: pa.Table,
) -> tuple[pa.Table, dict[str, str], dict[str, dict[str, Any]]]:
    """Rows whose content hash another row of this run has too: embedded once (the first), the
    others get copies of its points (``sha256:`` versions only: a hash of the content itself)."""
    rows = todo.select(["asset_id", "modality", "content_version"]).to_pylist()
    leaders: dict[tuple[str, str], str] = {}
    copies: dict[str, str] = {}
    keep: list[bool] = []
    for row in rows:
        version = row["content_version"]
        key = (row["modality"], version)
        if version and version.startswith("sha256:") and key in leaders:
            copies[row["asset_id"]] = leaders[key]
            keep.append(False)
            continue
        if version and version.startswith("sha256:"):
            leaders[key] = row["asset_id"]
        keep.append(True)
    if not copies:
        return todo, {}, {}
    mask = pa.array(keep, pa.bool_())
    followers = todo.filter(pc.invert(mask)).to_pylist()
    return todo.filter(mask), copies, {r["asset_id"]: r for r in followers}


def _held_points(cfg: BackfillJobConfig, table: pa.Table) -> dict[str, int]:
    """Points the store holds per asset (verify runs), read before the run starts writing."""
    store = open_store(cfg.qdrant, cfg.embedding, cfg.segmentation)
    try:
        store.open()
        if not store.exists():
            return {}
        return store.count_by_asset(table.column("asset_id").to_pylist())
    finally:
        store.close()


class _Accounting:
    """The driver's handling of acknowledgements: the ledger, and the journal as assets finish.

    Every second (and at the end) the assets that became complete have their previous version's
    points removed and are then journaled: a crash loses at most the last second's entries, whose
    assets the next run embeds again to the same point ids.
    """

    def __init__(self, plan: BackfillPlan, store: VectorStore, journal: Journal) -> None:
        self.plan, self.store, self.journal = plan, store, journal
        self.last = time.monotonic()

    def __call__(self, batch: pa.Table) -> None:
        self.plan.ledger.account(batch)
        self.flush()

    def flush(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.last < 1.0:
            return
        self.last = time.monotonic()
        done = self.plan.ledger.drain_completed()
        if not done:
            return
        stale = [
            (st.asset_id, st.content_version) for st in done if st.asset_id in self.plan.changed
        ]
        if stale:
            self.store.delete_versions(stale, keep=True)
        self.journal.record(
            self.plan.collection, self.plan.run_id, entries_of(done, self.plan.fingerprints)
        )
        self.journal.heartbeat(self.plan.collection, self.plan.run_id)


def backfill_pipeline(cfg: BackfillJobConfig, plan: BackfillPlan, store: VectorStore) -> Pipeline:
    """The backfill's stages: decode, embed, write (or, with service segmentation, embed, write)."""
    from pipelines.core.plan import asset_blocks
    from pipelines.core.rows import ASSET
    from pipelines.stages.write import WriteStage

    res = cfg.resources
    source = BlocksSource(ASSET, plan.todo, cut=asset_blocks)
    write = WriteStage(
        store,
        resources=Resources.of(res.write, actor=True, batch_size=cfg.qdrant.batch_size),
        batch_size=cfg.qdrant.batch_size,
    )
    if cfg.segmentation.mode == "service":
        from pipelines.stages.embed_service import ServiceEmbedStage

        embed_assets = ServiceEmbedStage(
            cfg.embedding,
            cfg.segmentation,
            cfg.bedrock,
            # A job's client token is derived from its input, the asset and its version, not the
            # run: a resumed run gets the job a killed one started instead of paying twice.
            run_id="",
            resources=Resources.of(
                res.embed, actor=True, calls_per_actor=res.embed.max_in_flight, batch_size=1
            ),
        )
        return Pipeline("backfill-service", source, [embed_assets, write])

    from pipelines.stages.decode import DecodeStage
    from pipelines.stages.embed import EmbedStage

    decode = DecodeStage(
        cfg.segmentation,
        cfg.embedding,
        cfg.bedrock.s3_endpoint_url,
        accepts=cfg.usecase.modalities,
        # Blocks of one embed batch: every embed task is short, so both actors stay busy on small
        # assets, and acknowledgements reach the driver (the journal, the console) as the run goes:
        # a killed run loses at most the batches in flight.
        resources=Resources.of(res.decode, batch_size=1, rows_per_block=res.embed.max_in_flight),
    )
    embed = EmbedStage(
        cfg.bedrock,
        cfg.embedding,
        budget_name=f"nova-mme-rate-budget-{cfg.qdrant.collection}",
        max_in_flight=res.embed.max_in_flight,
        # Two batches per actor: one is filled while the other's requests are in flight.
        resources=Resources.of(
            res.embed, actor=True, calls_per_actor=2, batch_size=res.embed.max_in_flight
        ),
    )
    return Pipeline("backfill", source, [decode, embed, write])


def finish_backfill(
    cfg: BackfillJobConfig,
    plan: BackfillPlan,
    store: VectorStore,
    figures: dict[str, Any],
    started: float,
    console: Console | None = None,
    journal: Journal | None = None,
    abort: str | None = None,
) -> BackfillResult:
    """Decide outcomes, remove partial and stale points, journal, prune, check counts, write the
    report and dead letters. After an abort (``abort`` says why) the same, best effort: assets
    not finished are left ``pending`` for the next run, and a store that is down is left alone."""
    from pipelines.sinks.dead_letter import DeadLetterWriter

    console = console or Console("backfill")
    ledger = plan.ledger
    cleanup: dict[str, Any] = {}
    points_in_collection: int | None = None
    count_check: dict[str, Any] = {"ok": None}
    pruned = 0
    if abort is None and plan.copies:
        _copy_same_content(plan, store)
    partial = ledger.finalize(pending=abort is not None)
    try:
        if partial:
            # Only this run's version: a changed asset keeps its previous, complete version.
            store.delete_versions([(a, ledger.assets[a].content_version) for a in partial])
        if journal is not None:
            decided = [st for st in ledger.assets.values() if st.outcome == "dead_lettered"]
            done = ledger.drain_completed()
            stale = [
                (st.asset_id, st.content_version) for st in done if st.asset_id in plan.changed
            ]
            if stale:
                store.delete_versions(stale, keep=True)
            entries = entries_of(done + decided, plan.fingerprints)
            journal.record(plan.collection, plan.run_id, entries)
            if abort is None:
                journal.record_fingerprints(plan.collection, plan.fingerprints)
                if cfg.prune:
                    pruned = _prune(cfg, store, journal, plan)
        points_in_collection = store.finish()
        count_check = _count_check(store, ledger)
    except Exception as exc:
        if abort is None or infrastructure_cause(exc) is None:
            raise
        cleanup = {"error": f"{type(exc).__name__}: {exc}", "left_for_next_run": len(partial)}
    duration = time.monotonic() - started
    status = "aborted" if abort else "done"
    report = build_report(
        ledger,
        cfg.prices,
        duration,
        extra={
            "status": status,
            "run_id": plan.run_id,
            "usecase": cfg.usecase.name,
            "collection": cfg.qdrant.collection,
            "manifest": cfg.manifest,
            "decoded": plan.todo.num_rows,
            "changed": len(plan.changed),
            "pruned": pruned,
            "points_in_collection": points_in_collection,
            "count_check": count_check,
            **({"abort_reason": abort} if abort else {}),
            **({"cleanup": cleanup} if cleanup else {}),
            **figures,
        },
    )
    report["bedrock_calls"] += int(figures.get("preflight_calls", 0))
    exit_code = 3 if abort else 0
    limit = cfg.limits.max_dead_letter_fraction
    if not abort and limit is not None and plan.todo.num_rows:
        fraction = report["dead_lettered"] / plan.todo.num_rows
        if fraction > limit:
            report["status"] = "failed"
            report["failure"] = (
                f"{fraction:.1%} of the rows to embed were dead-lettered, over "
                f"limits.max_dead_letter_fraction={limit}"
            )
            exit_code = 5
    dlq = DeadLetterWriter(plan.run_dir / "dead_letter.parquet")
    for r in ledger.dead_letters():
        dlq.add(r)
    dead_path = Path(dlq.close())
    report_path = write_report(report, plan.run_dir)
    if journal is not None:
        journal.end_run(plan.run_id, report["status"], str(report_path))
    _summary(console, report, report_path, dead_path)
    return BackfillResult(plan.run_dir, report_path, dead_path, report, exit_code)


def _copy_same_content(plan: BackfillPlan, store: VectorStore) -> None:
    """Give each asset whose content another asset of the run had the other one's points."""
    ledger = plan.ledger
    for follower, leader in plan.copies.items():
        source, target = ledger.assets[leader], ledger.assets[follower]
        if not source.complete:
            why = source.failures[0] if source.failures else None
            ledger.fail(
                follower,
                why.stage if why else "embed",
                why.code if why else codes.INCOMPLETE,
                f"same content as {leader!r}, which was not embedded"
                + (f": {why.message}" if why else ""),
            )
            continue
        points = store.copy_asset(leader, source.content_version, plan.copy_rows[follower])
        target.expected_segments = source.expected_segments
        for segment in sorted(source.segments_written):
            ledger.written(follower, segment, points=0)
        target.points_written = points
        ledger.progress.points += points


def _prune(cfg: BackfillJobConfig, store: VectorStore, journal: Journal, plan: BackfillPlan) -> int:
    """Delete the points and journal entries of assets the manifest no longer lists."""
    from pipelines.core.manifest import load_manifest

    assert cfg.manifest is not None
    ids = load_manifest(cfg.manifest, cfg.bedrock.s3_endpoint_url).column("asset_id").to_pylist()
    pruned = 0
    for chunk in journal.absent(plan.collection, ids):
        gone = [e.asset_id for e in chunk]
        store.delete_assets(gone)
        journal.forget(plan.collection, gone)
        pruned += len(gone)
    return pruned


def _status(ledger: AssetLedger, pipeline: Pipeline) -> Progress:
    """The ledger's totals, with live call counts from the stages (the rate budget counts calls
    as they are made, the ledger when their results arrive)."""
    progress = dataclasses.replace(ledger.progress)
    for stage in pipeline.stages:
        live = stage.live()
        progress.bedrock_calls = max(progress.bedrock_calls, int(live.get("bedrock_calls", 0)))
        progress.throttles = max(progress.throttles, int(live.get("throttles", 0)))
    return progress


def _count_check(store: VectorStore, ledger: AssetLedger) -> dict[str, Any]:
    """Exact per-asset point counts in the store against what this run wrote."""
    embedded = {a: s for a, s in ledger.assets.items() if s.outcome == "embedded"}
    if not embedded:
        return {"assets": 0, "expected_points": 0, "found_points": 0, "ok": True}
    found = store.count_by_asset(list(embedded))
    mismatched = sorted(a for a, s in embedded.items() if found.get(a, 0) != s.points_written)
    return {
        "assets": len(embedded),
        "expected_points": sum(s.points_written for s in embedded.values()),
        "found_points": sum(found.get(a, 0) for a in embedded),
        "ok": not mismatched,
        "mismatched_assets": mismatched[:20],
    }


def _summary(console: Console, report: dict[str, Any], report_path: Path, dead_path: Path) -> None:
    console.say(
        f"done in {report['duration_s']:.1f}s: {report['rows']} rows -> "
        f"{report['embedded']} embedded, {report['skipped_unchanged']} unchanged, "
        f"{report['skipped_dead_letter']} failed before, {report['skipped_modality']} other "
        f"modality, {report['dead_lettered']} dead-lettered"
        + (f", {report['pending']} pending" if report.get("pending") else "")
        + (f", {report['pruned']} pruned" if report.get("pruned") else "")
        + f"; {report['points_written']} points, {report['bedrock_calls']} Bedrock calls "
        f"({report['throttled']} throttled, {report['retries']} retries), "
        f"est. ${report['cost_usd']:.4f}"
    )
    for modality, agg in report["by_modality"].items():
        console.say(
            f"  {modality:<9} rows {agg['rows']:>4}  embedded {agg['embedded']:>4}  "
            f"dead {agg['dead_lettered']:>3}  points {agg['points_written']:>5}"
        )
    console.say(f"report:      {report_path}")
    console.say(f"dead letter: {dead_path}")
