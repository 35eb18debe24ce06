"""The backfill job: a Parquet manifest in, vectors in a store, a report and a dead-letter file out.

Plan, build, drive, finish:

- :func:`pipelines.planning.plan_backfill` streams the manifest through validation and the
  journal, and gives every row a ledger entry (on disk: nothing per asset in the driver);
- :func:`backfill_pipeline` arranges the stages (decode, embed, write; or service embed, write);
- :func:`pipelines.core.runner.run_pipeline` drives them, the ledger accounting for every
  acknowledgement;
- :func:`finish_backfill` removes the points of assets not kept, checks the counts and writes the
  report.

See ``docs/architecture.md``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.collections import aim_collection, record_if_missing
from pipelines.config.schema import BackfillJobConfig
from pipelines.config.validate import validate_backfill
from pipelines.core import preflight
from pipelines.core.console import Console
from pipelines.core.credentials import apply_to_environment, resolve_credentials
from pipelines.core.errors import ConfigError, InfrastructureError, SpendingLimitReached
from pipelines.core.incremental import entries_of
from pipelines.core.io import InputPolicy
from pipelines.core.journal import Journal
from pipelines.core.ledger import Progress, RunLedger, Settled
from pipelines.core.report import build_report, write_report
from pipelines.core.runner import Pipeline, run_pipeline
from pipelines.core.stage import Resources
from pipelines.planning import BackfillPlan, new_run_id, plan_backfill, settle_copies
from pipelines.stores import VectorStore, open_store

__all__ = [
    "BackfillPlan",
    "BackfillResult",
    "backfill_pipeline",
    "finish_backfill",
    "plan_backfill",
    "run_backfill",
]


@dataclass
class BackfillResult:
    """What a run produced: where its files are and the report's contents."""

    run_dir: Path
    report_path: Path
    dead_letter_path: Path
    report: dict[str, Any] = field(default_factory=dict)
    # The process's exit code (docs/scheduled-backfills.md): 0 done, 3 aborted, 4 stopped by a
    # spending limit, 5 too many dead letters, 7 batch jobs still running (pending).
    exit_code: int = 0


Arrangement = Callable[[BackfillJobConfig, BackfillPlan, VectorStore], Pipeline]


def run_backfill(cfg: BackfillJobConfig, arrange: Arrangement | None = None) -> BackfillResult:
    """Run one backfill end to end; raises ConfigError / ManifestError before any work.

    ``arrange`` builds the pipeline (default :func:`backfill_pipeline`); a benchmark passes one
    that swaps in an instrumented stage. An infrastructure failure during the run (the store, the
    credentials, Bedrock's access) ends it cleanly: the report says ``aborted`` and why, and the
    result's ``exit_code`` is 3 (see ``docs/scheduled-backfills.md``).
    """
    if cfg.dry_run or cfg.plan_only:
        # Never a real run by mistake: python -m jobs.backfill dry_run=true estimates instead.
        raise ConfigError(
            "dry_run" if cfg.dry_run else "plan_only",
            "run_backfill makes a real run; estimate with pipelines.estimate.run_estimate",
        )
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
    run_id = new_run_id()
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
    store = open_store(cfg.qdrant, cfg.embedding, cfg.segmentation, cfg.keywords)
    store.open()
    try:
        plan = plan_backfill(cfg, console, journal, run_id, store, collection_key(cfg))
    except BaseException:
        store.close()
        raise
    journal.start_run(run_id, plan.collection)
    figures: dict[str, Any] = {}
    left = journal.invocations(plan.collection)
    if left:
        # A stopped run's async jobs: this run's starts of the same inputs carry the same
        # client tokens and get those jobs back (their assets that are done are skipped).
        runs = sorted({str(j["run_id"]) for j in left})
        console.say(
            f"{len(left)} async job(s) that stopped run(s) {', '.join(runs)} left in flight are "
            "on record; their inputs get them back instead of new jobs"
        )
        figures["async_jobs_left_in_flight"] = len(left)
    abort: str | None = None
    stopped = False
    pending_jobs = 0
    try:
        # The store first: an unreachable store or a dimension clash fails before Bedrock.
        store.ensure_collection()
        preflight.check_store(store)
        if cfg.bedrock.mode == "batch":
            from pipelines.batch import run_batch

            pending_jobs = run_batch(cfg, plan, store, journal, console, worker_env, figures)
        elif plan.todo_rows:
            if cfg.segmentation.mode == "service":
                preflight.check_staging(cfg)
            figures["preflight_calls"] = preflight.check_bedrock(cfg)
            pipeline = (arrange or backfill_pipeline)(cfg, plan, store)
            console.say(f"pipeline: {pipeline.describe()}")
            console.watch(lambda: _status(plan.ledger.progress, pipeline))
            accounting = _Accounting(plan, store, journal, pipeline)
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
        # A spending limit is not a failure: the same clean stop, its own status and exit code.
        stopped = isinstance(cause, SpendingLimitReached)
        abort = str(cause) if stopped else f"{type(cause).__name__}: {cause}"
        console.say(f"{'stopped' if stopped else 'aborted'}: {abort}")
    try:
        return finish_backfill(
            cfg,
            plan,
            store,
            figures,
            started,
            console,
            journal,
            abort,
            stopped=stopped,
            pending_jobs=pending_jobs,
        )
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


class _Accounting:
    """The driver's handling of acknowledgements: the ledger, and the journal as assets finish.

    Every second (and at the end) the ledger's buffer goes to its file; the assets that became
    complete have their previous version's points removed and are then journaled: a crash loses
    at most the last second's entries, whose assets the next run embeds again to the same point
    ids.
    """

    def __init__(
        self,
        plan: BackfillPlan,
        store: VectorStore,
        journal: Journal,
        pipeline: Pipeline | None = None,
    ) -> None:
        self.plan, self.store, self.journal = plan, store, journal
        self.pipeline = pipeline
        self.last = time.monotonic()

    def __call__(self, batch: pa.Table) -> None:
        self.plan.ledger.account(batch)
        self.flush()

    def account(self, batch: pa.Table, via: str | None = None) -> None:
        """Rows that did not come out of the pipeline (a batch job's output: ``via="batch"``)."""
        self.plan.ledger.account(batch, via)
        self.flush()

    def flush(self, force: bool = False) -> None:
        ledger = self.plan.ledger
        if not force and not ledger.due(self.last):
            return
        self.last = time.monotonic()
        settle(self.plan, self.store, self.journal, ledger.flush())
        # Async jobs in flight go on record (segmentation=service): a killed run's are known.
        for stage in self.pipeline.stages if self.pipeline is not None else ():
            jobs = stage.live().get("async_jobs")
            if jobs:
                self.journal.record_invocations(self.plan.collection, self.plan.run_id, jobs)
        self.journal.heartbeat(self.plan.collection, self.plan.run_id)


def settle(
    plan: BackfillPlan, store: VectorStore, journal: Journal | None, done: Iterable[Settled]
) -> None:
    """Assets whose outcome is decided: the earlier version of a kept one (embedded, or partial)
    leaves the store, then the journal records them."""
    done = list(done)
    if not done:
        return
    stale = [(s.asset_id, s.content_version) for s in done if s.changed and s.kept]
    if stale:
        store.delete_versions(stale, keep=True)
    if journal is not None:
        # What the journal records as done must survive a crash of the machine too.
        store.sync()
        journal.record(plan.collection, plan.run_id, entries_of(done, plan.fingerprints))
        journal.collect_invocations(plan.collection, [s.asset_id for s in done])


def backfill_pipeline(cfg: BackfillJobConfig, plan: BackfillPlan, store: VectorStore) -> Pipeline:
    """The backfill's stages: decode, embed, write (or, with service segmentation, embed, write)."""
    from pipelines.core.rate_limit import guard_name
    from pipelines.stages.decode import AssetLimits
    from pipelines.stages.write import WriteStage

    res = cfg.resources
    # Throttled calls wait until then (limits.run_deadline_s from the run's start).
    run_deadline = time.time() + cfg.limits.run_deadline_s
    split = cfg.segmentation.mode != "service" and cfg.decode.split
    source = plan.source(cfg.segmentation if split else None)
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
            budget_name=guard_name(cfg.bedrock, cfg.embedding.model_id),
            account=plan.run_id,
            max_calls=cfg.limits.max_calls,
            max_usd=cfg.limits.max_usd,
            prices=cfg.prices,
            resources=Resources.of(
                res.embed, actor=True, calls_per_actor=res.embed.max_in_flight, batch_size=1
            ),
            run_deadline=run_deadline,
            inputs=InputPolicy.for_job(cfg),
        )
        return Pipeline("backfill-service", source, [embed_assets, write])

    from pipelines.stages.decode import DecodeStage
    from pipelines.stages.embed import EmbedStage

    decode = DecodeStage(
        cfg.segmentation,
        cfg.embedding,
        cfg.bedrock.s3_endpoint_url,
        accepts=cfg.usecase.modalities,
        limits=AssetLimits.of(cfg.limits),
        decode=cfg.decode,
        inputs=InputPolicy.for_job(cfg),
        # Blocks of one embed batch: every embed task is short, so both actors stay busy on small
        # assets, and acknowledgements reach the driver (the journal, the console) as the run goes:
        # a killed run loses at most the batches in flight.
        resources=Resources.of(res.decode, batch_size=1, rows_per_block=res.embed.max_in_flight),
    )
    embed = EmbedStage(
        cfg.bedrock,
        cfg.embedding,
        # One guard per account, region and model, shared by every job on the cluster.
        budget_name=guard_name(cfg.bedrock, cfg.embedding.model_id),
        run_id=plan.run_id,
        max_calls=cfg.limits.max_calls,
        max_usd=cfg.limits.max_usd,
        prices=cfg.prices,
        max_in_flight=res.embed.max_in_flight,
        run_deadline=run_deadline,
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
    *,
    stopped: bool = False,
    pending_jobs: int = 0,
) -> BackfillResult:
    """Decide outcomes, remove the points of assets not kept (and of partial assets' failed
    segments) and stale versions, journal, prune, check counts, write the report and dead
    letters. After an abort (``abort`` says why) the same, best effort: assets not finished are
    left ``pending`` for the next run, and a store that is down is left alone.
    ``stopped``: the abort was a spending limit (status ``stopped``, ``stop_reason``, exit 4).
    ``pending_jobs``: batch jobs still running; their assets stay ``pending`` (status
    ``pending``, exit 7) and the next run collects them."""
    from pipelines.sinks.dead_letter import DeadLetterWriter

    console = console or Console("backfill")
    ledger = plan.ledger
    cleanup: dict[str, Any] = {}
    points_in_collection: int | None = None
    count_check: dict[str, Any] = {"ok": None}
    pruned = 0
    left = 0
    try:
        if abort is None and plan.copy_rows:
            _copy_same_content(plan, store, journal)
        ledger.finalize(cfg.prices, pending=abort is not None or pending_jobs > 0)
        for pairs in ledger.unkept():
            # Only this run's version: a changed asset keeps its previous, complete version.
            left += len(pairs)
            store.delete_versions(pairs)
        for segments in ledger.missing_segments():
            store.delete_segments(segments)
        for failed in ledger.with_failures():
            settle(plan, store, journal, failed)
        if journal is not None and abort is None:
            journal.record_fingerprints(plan.collection, plan.fingerprints)
            if cfg.prune:
                pruned = _prune(cfg, store, journal, plan)
        points_in_collection = store.finish()
        count_check = _count_check(store, ledger)
    except Exception as exc:
        if abort is None or infrastructure_cause(exc) is None:
            raise
        cleanup = {"error": f"{type(exc).__name__}: {exc}", "left_for_next_run": left}
    duration = time.monotonic() - started
    status = "stopped" if abort and stopped else "aborted" if abort else "done"
    if status == "done" and pending_jobs:
        status = "pending"
    why = ("stop_reason" if stopped else "abort_reason") if abort else None
    report = build_report(
        ledger,
        duration,
        extra={
            "status": status,
            "run_id": plan.run_id,
            "usecase": cfg.usecase.name,
            "collection": cfg.qdrant.collection,
            "manifest": cfg.manifest,
            "decoded": plan.todo_rows,
            "changed": plan.changed,
            "pruned": pruned,
            "points_in_collection": points_in_collection,
            "count_check": count_check,
            # Dead-letter rows by code (malformed answers, throttled at the deadline, ...).
            "dead_letters_by_code": ledger.dead_letters_by_code(),
            # Which path the assets took and what each cost at its own price table.
            "by_path": ledger.by_path(),
            **({why: abort} if why else {}),
            **({"cleanup": cleanup} if cleanup else {}),
            **figures,
        },
    )
    report["bedrock_calls"] += int(figures.get("preflight_calls", 0))
    exit_code = (4 if stopped else 3) if abort else 7 if status == "pending" else 0
    limit = cfg.limits.max_dead_letter_fraction
    if not abort and not pending_jobs and limit is not None and plan.todo_rows:
        fraction = report["dead_lettered"] / plan.todo_rows
        if fraction > limit:
            report["status"] = "failed"
            report["failure"] = (
                f"{fraction:.1%} of the rows to embed were dead-lettered, over "
                f"limits.max_dead_letter_fraction={limit}"
            )
            exit_code = 5
    with DeadLetterWriter(plan.run_dir / "dead_letter.parquet") as dlq:
        dlq.add_many(ledger.dead_letters())
    dead_path = Path(dlq.path)
    report_path = write_report(report, plan.run_dir)
    if journal is not None:
        journal.end_run(plan.run_id, report["status"], str(report_path))
    ledger.close()
    _summary(console, report, report_path, dead_path)
    return BackfillResult(plan.run_dir, report_path, dead_path, report, exit_code)


def _copy_same_content(plan: BackfillPlan, store: VectorStore, journal: Journal | None) -> None:
    """Give each asset whose content another asset of the run had the other one's points."""
    settle_copies(
        plan,
        lambda leader, row: store.copy_asset(leader.asset_id, leader.content_version, row),
        lambda done: settle(plan, store, journal, done),
    )


def _prune(cfg: BackfillJobConfig, store: VectorStore, journal: Journal, plan: BackfillPlan) -> int:
    """Delete the points and journal entries of assets the manifest no longer lists."""
    from pipelines.core.manifest import iter_asset_ids

    assert cfg.manifest is not None
    pruned = 0
    present = iter_asset_ids(cfg.manifest, cfg.bedrock.s3_endpoint_url)
    for chunk in journal.absent(plan.collection, present):
        gone = [e.asset_id for e in chunk]
        store.delete_assets(gone)
        journal.forget(plan.collection, gone)
        pruned += len(gone)
    return pruned


def _status(ledger_progress: Progress, pipeline: Pipeline) -> Progress:
    """The ledger's totals, with live call counts from the stages (the rate budget counts calls
    as they are made, the ledger when their results arrive)."""
    progress = dataclasses.replace(ledger_progress)
    for stage in pipeline.stages:
        live = stage.live()
        progress.bedrock_calls = max(progress.bedrock_calls, int(live.get("bedrock_calls", 0)))
        progress.throttles = max(progress.throttles, int(live.get("throttles", 0)))
    return progress


def _count_check(store: VectorStore, ledger: RunLedger) -> dict[str, Any]:
    """Exact per-asset point counts in the store against what this run kept (in chunks)."""
    assets = expected = found_total = 0
    mismatched: list[str] = []
    for chunk in ledger.kept():
        found = store.count_by_asset([a for a, _ in chunk])
        for asset_id, points in chunk:
            assets += 1
            expected += points
            found_total += found.get(asset_id, 0)
            if found.get(asset_id, 0) != points and len(mismatched) < 20:
                mismatched.append(asset_id)
    return {
        "assets": assets,
        "expected_points": expected,
        "found_points": found_total,
        "ok": not mismatched,
        **({"mismatched_assets": mismatched} if assets else {}),
    }


def _summary(console: Console, report: dict[str, Any], report_path: Path, dead_path: Path) -> None:
    console.say(
        f"done in {report['duration_s']:.1f}s: {report['rows']} rows -> "
        f"{report['embedded']} embedded, {report['skipped_unchanged']} unchanged, "
        f"{report['skipped_dead_letter']} failed before, {report['skipped_modality']} other "
        f"modality, {report['dead_lettered']} dead-lettered"
        + (f", {report['partial']} partial" if report.get("partial") else "")
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
            + (f"  partial {agg['partial']:>3}" if agg.get("partial") else "")
        )
    console.say(f"report:      {report_path}")
    console.say(f"dead letter: {dead_path}")
