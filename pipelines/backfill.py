"""The backfill job: a Parquet manifest in, vectors in Qdrant, a report and a dead-letter file out.

Plan (driver) -> decode (CPU tasks) -> embed (async-style I/O actors, one shared rate budget) ->
write (batched idempotent upserts) -> report. See ``docs/architecture.md``.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.config.schema import BackfillJobConfig
from pipelines.config.validate import validate_backfill
from pipelines.core.credentials import CredentialsPlan, apply_to_environment, resolve_credentials
from pipelines.core.ledger import AssetLedger
from pipelines.core.plan import asset_blocks, configure_data_context
from pipelines.core.rate_limit import BUDGET_NAMESPACE, RateBudgetSettings, get_or_create_budget
from pipelines.core.report import build_report, write_report

log = logging.getLogger(__name__)


@dataclass
class BackfillResult:
    """What a run produced: where its files are and the report's contents."""

    run_dir: Path
    report_path: Path
    dead_letter_path: Path
    report: dict[str, Any] = field(default_factory=dict)


def _say(msg: str) -> None:
    print(f"[backfill] {msg}", flush=True)


def init_ray(cfg: BackfillJobConfig, worker_env: dict[str, str] | None = None) -> bool:
    """Join the cluster given by ``ray.address`` or start a Ray of this job's own; no-op if this
    process is already connected. Returns whether this call connected.

    ``ray.address`` unset starts a new local Ray (``address="local"``) even when a cluster runs on
    the machine: a local job never joins a stranger's cluster. ``worker_env`` (environment
    variables for every worker) goes into the job's runtime environment; under ``ray job submit``
    Ray merges it with the submitted one (a variable set in both is refused by Ray).
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "ignore_reinit_error": True,
        "log_to_driver": cfg.ray.log_to_driver,
    }
    if cfg.ray.address:
        kwargs["address"] = cfg.ray.address
    else:
        kwargs["address"] = "local"
        kwargs["include_dashboard"] = False
        if cfg.ray.num_cpus:
            kwargs["num_cpus"] = cfg.ray.num_cpus
    if worker_env:
        kwargs["runtime_env"] = {"env_vars": dict(worker_env)}
    ray.init(**kwargs)
    return True


def run_backfill(cfg: BackfillJobConfig) -> BackfillResult:
    """Run one backfill end to end; raises ConfigError / ManifestError before any work."""
    from pipelines.core.manifest import load_manifest
    from pipelines.sinks.dead_letter import DeadLetterWriter
    from pipelines.sinks.qdrant_writer import QdrantWriter

    started = time.monotonic()
    validate_backfill(cfg)
    assert cfg.manifest is not None
    # Credentials before anything reads S3 or calls Bedrock: refuses here, in one line, when none
    # are found and an endpoint is AWS; dummy ones for endpoints on this machine.
    credentials = resolve_credentials(cfg.bedrock)
    if credentials.dummy:
        apply_to_environment(credentials)
        _say(credentials.describe() + " (driver and every worker)")
    s3_endpoint = cfg.bedrock.s3_endpoint_url
    manifest = load_manifest(cfg.manifest, s3_endpoint)
    if cfg.limit is not None:
        manifest = manifest.slice(0, cfg.limit)

    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    run_dir = Path(cfg.run_dir) / cfg.usecase.name / run_id
    run_dir.mkdir(parents=True, exist_ok=True)

    # Plan: every row gets a ledger entry now, so nothing can vanish later.
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
    _say(
        f"manifest {cfg.manifest}: {manifest.num_rows} rows, {todo.num_rows} to embed "
        f"for use case {cfg.usecase.name!r} into collection {cfg.qdrant.collection!r}"
    )

    # Qdrant first: an unreachable store or a dimension clash fails before Bedrock is called.
    writer = QdrantWriter(
        cfg.qdrant,
        cfg.embedding.dimension,
        embedding=cfg.embedding,
        segmentation=cfg.segmentation,
    )
    writer.open()
    try:
        writer.ensure_collection()
        report_extra: dict[str, Any] = {}
        if todo.num_rows:
            report_extra = _execute(cfg, todo, ledger, writer, run_id, credentials)
        partial = ledger.finalize()
        if partial:
            writer.delete_assets(partial)
        points_in_collection = writer.finish_load()
        count_check = _count_check(writer, ledger)
    finally:
        writer.close()

    duration = time.monotonic() - started
    report = build_report(
        ledger,
        cfg.prices,
        duration,
        extra={
            "run_id": run_id,
            "usecase": cfg.usecase.name,
            "collection": cfg.qdrant.collection,
            "manifest": cfg.manifest,
            "points_in_collection": points_in_collection,
            "count_check": count_check,
            **report_extra,
        },
    )
    dlq = DeadLetterWriter(run_dir / "dead_letter.parquet")
    for r in ledger.dead_letters():
        dlq.add(r)
    dead_path = Path(dlq.close())
    report_path = write_report(report, run_dir)
    _summary(report, report_path, dead_path)
    return BackfillResult(run_dir, report_path, dead_path, report)


def _execute(
    cfg: BackfillJobConfig,
    todo: pa.Table,
    ledger: AssetLedger,
    writer: Any,
    run_id: str,
    credentials: CredentialsPlan | None = None,
) -> dict[str, Any]:
    import ray
    import ray.data as rd

    # Looked up at call time so that tools can substitute an instrumented subclass.
    from pipelines.stages import decode as decode_module
    from pipelines.stages.embed import SegmentEmbedder

    worker_env = credentials.env if credentials else {}
    connected_here = init_ray(cfg, worker_env)
    # Connected before this job (a notebook, a test session): the job's runtime environment is
    # fixed, so the stages that build AWS clients get the variables themselves.
    stage_args: dict[str, Any] = {}
    if worker_env and not connected_here:
        stage_args["runtime_env"] = {"env_vars": dict(worker_env)}
    ctx = rd.DataContext.get_current()
    configure_data_context(ctx)
    ctx.enable_progress_bars = sys.stderr.isatty()

    budget_name = f"nova-mme-rate-budget-{cfg.qdrant.collection}"
    budget = get_or_create_budget(
        RateBudgetSettings(
            cfg.bedrock.quota.requests_per_minute, cfg.bedrock.quota.tokens_per_minute
        ),
        name=budget_name,
    )
    cpus = int(ray.cluster_resources().get("CPU", 2))
    ds = rd.from_arrow(asset_blocks(todo, cpus))
    if cfg.segmentation.mode == "service":
        embedded = ds.map_batches(
            ServiceBatchEmbedder,
            batch_size=1,
            batch_format="pyarrow",
            fn_constructor_kwargs={
                "bedrock": cfg.bedrock,
                "embedding": cfg.embedding,
                "segmentation": cfg.segmentation,
                "run_id": run_id,
            },
            compute=rd.ActorPoolStrategy(
                size=cfg.bedrock.actors,
                max_concurrent_calls_per_actor=cfg.bedrock.max_in_flight_per_actor,
                enable_true_multi_threading=True,
            ),
            num_cpus=cfg.bedrock.actor_num_cpus,
            **stage_args,
        )
    else:
        from pipelines.stages.decode import add_decode_stage

        segments = add_decode_stage(
            ds,
            cfg.segmentation,
            cfg.embedding,
            cfg.bedrock.s3_endpoint_url,
            num_cpus=cfg.ray.decode_num_cpus,
            concurrency=cfg.ray.decode_concurrency,
            decode_cls=decode_module.DecodeFn,
            ray_remote_args=stage_args,
        )
        embedded = segments.map_batches(
            SegmentEmbedder,
            batch_size=max(1, cfg.bedrock.max_in_flight_per_actor),
            batch_format="pyarrow",
            fn_constructor_kwargs={
                "bedrock": cfg.bedrock,
                "embedding": cfg.embedding,
                "budget_name": budget_name,
                "budget_namespace": BUDGET_NAMESPACE,
            },
            compute=rd.ActorPoolStrategy(
                size=cfg.bedrock.actors,
                max_concurrent_calls_per_actor=2,
                enable_true_multi_threading=True,
            ),
            num_cpus=cfg.bedrock.actor_num_cpus,
            **stage_args,
        )

    server_writers = cfg.qdrant.url is not None
    if server_writers:
        from pipelines.sinks.qdrant_stage import QdrantWriteFn

        # A server takes parallel writers: upserts go from the actors straight to Qdrant and
        # only slim acknowledgements come back to the driver.
        embedded = embedded.map_batches(
            QdrantWriteFn,
            batch_size=cfg.qdrant.batch_size,
            batch_format="pyarrow",
            fn_constructor_kwargs={
                "qdrant": cfg.qdrant,
                "dimension": cfg.embedding.dimension,
                "embedding": cfg.embedding,
                "segmentation": cfg.segmentation,
            },
            compute=rd.ActorPoolStrategy(size=cfg.qdrant.writers),
            num_cpus=cfg.ray.writer_num_cpus,
        )

    started = last_progress = time.monotonic()
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        if not pending:
            return
        result = writer.write(pending)
        refused = set()
        for r in result.rejected:
            refused.add((r["asset_id"], r.get("segment_index"), r.get("embedding_type")))
            ledger.fail(
                r["asset_id"],
                r.get("error_stage") or "write",
                r.get("error_code") or "rejected",
                r.get("error_message") or "",
            )
        for r in pending:
            if (r["asset_id"], r["segment_index"], r["embedding_type"]) not in refused:
                ledger.written(r["asset_id"], r["segment_index"])
        pending.clear()

    batch: pa.Table
    for batch in embedded.iter_batches(batch_size=cfg.qdrant.batch_size, batch_format="pyarrow"):
        for row in batch.to_pylist():
            ledger.observe(row)
            if row.get("error_code") is not None:
                continue
            if server_writers:
                ledger.written(row["asset_id"], row["segment_index"])
            else:
                pending.append(row)
        if len(pending) >= cfg.qdrant.batch_size:
            flush()
        if time.monotonic() - last_progress > 5.0:
            flush()
            last_progress = time.monotonic()
            _progress(ledger, todo.num_rows, started)
    flush()
    snapshot = ray.get(budget.snapshot.remote())
    return {"rate_budget": snapshot}


def _progress(ledger: AssetLedger, total: int, started: float) -> None:
    settled = points = calls = throttles = failed = 0
    for st in ledger.assets.values():
        if st.outcome is not None:
            continue
        points += st.points_written
        calls += st.bedrock_calls
        throttles += st.throttles
        if st.failures:
            failed += 1
            settled += 1
        elif st.complete:
            settled += 1
    elapsed = max(1e-6, time.monotonic() - started)
    _say(
        f"progress: {settled}/{total} assets settled ({failed} failed), {points} points, "
        f"{calls} Bedrock calls ({calls / elapsed * 60:.0f}/min, {throttles} throttled), "
        f"{elapsed:.0f}s"
    )


def _count_check(writer: Any, ledger: AssetLedger) -> dict[str, Any]:
    """Exact per-asset point counts in Qdrant against what this run wrote."""
    embedded = {a: s for a, s in ledger.assets.items() if s.outcome == "embedded"}
    if not embedded:
        return {"assets": 0, "expected_points": 0, "found_points": 0, "ok": True}
    found = writer.count_by_asset(list(embedded))
    mismatched = sorted(a for a, s in embedded.items() if found.get(a, 0) != s.points_written)
    return {
        "assets": len(embedded),
        "expected_points": sum(s.points_written for s in embedded.values()),
        "found_points": sum(found.get(a, 0) for a in embedded),
        "ok": not mismatched,
        "mismatched_assets": mismatched[:20],
    }


class ServiceBatchEmbedder:
    """Ray Data adapter for ``segmentation=service``: asset rows in, embedded rows out."""

    def __init__(self, **kwargs: Any) -> None:
        from pipelines.stages.embed_service import ServiceSegmentEmbedder

        self.inner = ServiceSegmentEmbedder(**kwargs)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from pipelines.core.schemas import EMBEDDED_SCHEMA, rows_to_table

        out: list[dict[str, Any]] = []
        for asset in batch.to_pylist():
            out.extend(self.inner(asset))
        return rows_to_table(out, EMBEDDED_SCHEMA)


def _summary(report: dict[str, Any], report_path: Path, dead_path: Path) -> None:
    _say(
        f"done in {report['duration_s']:.1f}s: {report['rows']} rows -> "
        f"{report['embedded']} embedded, {report['skipped_unchanged']} unchanged, "
        f"{report['skipped_modality']} other modality, {report['dead_lettered']} dead-lettered; "
        f"{report['points_written']} points, {report['bedrock_calls']} Bedrock calls "
        f"({report['throttled']} throttled, {report['retries']} retries), "
        f"est. ${report['cost_usd']:.4f}"
    )
    for modality, agg in report["by_modality"].items():
        _say(
            f"  {modality:<9} rows {agg['rows']:>4}  embedded {agg['embedded']:>4}  "
            f"dead {agg['dead_lettered']:>3}  points {agg['points_written']:>5}"
        )
    _say(f"report:      {report_path}")
    _say(f"dead letter: {dead_path}")
