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

from pipelines.config.schema import BackfillJobConfig
from pipelines.config.validate import validate_backfill
from pipelines.core.console import Console
from pipelines.core.credentials import apply_to_environment, resolve_credentials
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


@dataclass
class BackfillPlan:
    """The manifest rows to embed, and a ledger entry for every row."""

    run_id: str
    run_dir: Path
    todo: pa.Table
    ledger: AssetLedger


Arrangement = Callable[[BackfillJobConfig, BackfillPlan, VectorStore], Pipeline]


def run_backfill(cfg: BackfillJobConfig, arrange: Arrangement | None = None) -> BackfillResult:
    """Run one backfill end to end; raises ConfigError / ManifestError before any work.

    ``arrange`` builds the pipeline (default :func:`backfill_pipeline`); a benchmark passes one
    that swaps in an instrumented stage.
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
    plan = plan_backfill(cfg, console)
    store = open_store(cfg.qdrant, cfg.embedding, cfg.segmentation)
    store.open()
    try:
        # The store first: an unreachable store or a dimension clash fails before Bedrock.
        store.ensure_collection()
        figures: dict[str, Any] = {}
        if plan.todo.num_rows:
            pipeline = (arrange or backfill_pipeline)(cfg, plan, store)
            console.say(f"pipeline: {pipeline.describe()}")
            console.watch(lambda: _status(plan.ledger, pipeline))
            try:
                # Blocks as they come (the store batches its own upserts): the accounting, and so
                # the console, follow the run instead of waiting for full batches.
                by_stage = run_pipeline(
                    pipeline,
                    cfg.ray,
                    plan.ledger.account,
                    batch_size=None,
                    worker_env=credentials.env,
                )
            finally:
                console.stop()
            figures = {k: v for stage in by_stage.values() for k, v in stage.items()}
        return finish_backfill(cfg, plan, store, figures, started, console)
    finally:
        store.close()


def plan_backfill(cfg: BackfillJobConfig, console: Console | None = None) -> BackfillPlan:
    """Read the manifest; every row gets a ledger entry now, so nothing can vanish later."""
    from pipelines.core.manifest import load_manifest

    assert cfg.manifest is not None
    manifest = load_manifest(cfg.manifest, cfg.bedrock.s3_endpoint_url)
    if cfg.limit is not None:
        manifest = manifest.slice(0, cfg.limit)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    run_dir = Path(cfg.run_dir) / cfg.usecase.name / run_id
    run_dir.mkdir(parents=True, exist_ok=True)

    ledger = AssetLedger()
    wanted = set(cfg.usecase.modalities)
    keep = []
    for i, row in enumerate(manifest.select(["asset_id", "uri", "modality"]).to_pylist()):
        ledger.add(row["asset_id"], row["uri"], row["modality"])
        if row["modality"] in wanted:
            keep.append(i)
        else:
            ledger.skip(row["asset_id"], "skipped_modality")
    todo = manifest.take(pa.array(keep, type=pa.int64())) if keep else manifest.slice(0, 0)
    (console or Console("backfill")).say(
        f"manifest {cfg.manifest}: {manifest.num_rows} rows, {todo.num_rows} to embed "
        f"for use case {cfg.usecase.name!r} into collection {cfg.qdrant.collection!r}"
    )
    return BackfillPlan(run_id, run_dir, todo, ledger)


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
            run_id=plan.run_id,
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
        # Blocks of a few embed batches: every embed task is short, so both actors stay busy on
        # small assets and acknowledgements reach the driver (and the console) as the run goes.
        resources=Resources.of(
            res.decode, batch_size=1, rows_per_block=2 * res.embed.max_in_flight
        ),
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
) -> BackfillResult:
    """Decide outcomes, remove partial assets, check counts, write the report and dead letters."""
    from pipelines.sinks.dead_letter import DeadLetterWriter

    ledger = plan.ledger
    partial = ledger.finalize()
    if partial:
        store.delete_assets(partial)
    points_in_collection = store.finish()
    count_check = _count_check(store, ledger)
    report = build_report(
        ledger,
        cfg.prices,
        time.monotonic() - started,
        extra={
            "run_id": plan.run_id,
            "usecase": cfg.usecase.name,
            "collection": cfg.qdrant.collection,
            "manifest": cfg.manifest,
            "points_in_collection": points_in_collection,
            "count_check": count_check,
            **figures,
        },
    )
    dlq = DeadLetterWriter(plan.run_dir / "dead_letter.parquet")
    for r in ledger.dead_letters():
        dlq.add(r)
    dead_path = Path(dlq.close())
    report_path = write_report(report, plan.run_dir)
    _summary(console or Console("backfill"), report, report_path, dead_path)
    return BackfillResult(plan.run_dir, report_path, dead_path, report)


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
        f"{report['skipped_modality']} other modality, {report['dead_lettered']} dead-lettered; "
        f"{report['points_written']} points, {report['bedrock_calls']} Bedrock calls "
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
