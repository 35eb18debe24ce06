"""Estimates: what a backfill would do and cost, before paying for it.

``python -m jobs.estimate`` (or ``dry_run=true`` on a backfill) plans the run exactly as the
backfill would (the same manifest reading, the same diff against the journal: only what a real run
would embed is estimated), decodes and segments it with the same stages, and replaces the embed
stage with :class:`~pipelines.stages.dry_embed.DryEmbedStage`, which builds and checks every
request and counts it without calling Bedrock. The run ledger accounts for the rows as in a real
run, so the estimate's ``bedrock_calls`` and ``cost_usd`` are the report's own figures, computed by
the same code.

``plan_only=true`` stops after planning: no decoding (for corpora too large to decode twice); it
counts the rows by what the run would do with them.

Nothing is written to the journal or the collection, and no lock is taken: an estimate can run
beside a backfill. The result is ``estimate.json`` in the run folder.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.config.schema import BackfillJobConfig
from pipelines.config.validate import validate_backfill
from pipelines.core.console import Console
from pipelines.core.errors import ConfigError
from pipelines.core.journal import Journal
from pipelines.core.runner import Pipeline, run_pipeline
from pipelines.core.stage import Resources
from pipelines.planning import BackfillPlan, plan_backfill, settle_copies

ESTIMATE_FILE = "estimate.json"


@dataclass
class EstimateResult:
    run_dir: Path
    path: Path
    estimate: dict[str, Any] = field(default_factory=dict)


def run_estimate(cfg: BackfillJobConfig) -> EstimateResult:
    """Plan (unless ``cfg.plan_only``, also decode and count) a backfill; write the estimate."""
    from pipelines.backfill import collection_key

    started = time.monotonic()
    validate_backfill(cfg)
    console = Console("estimate", quota_rpm=cfg.bedrock.quota.requests_per_minute)
    journal_file = Path(cfg.state.path) / "journal.sqlite"
    # Read the journal only if there is one: an estimate creates nothing.
    journal = Journal(cfg.state.path) if journal_file.exists() else None
    try:
        key = collection_key(_aimed(cfg, console)) if journal is not None else ""
        plan = plan_backfill(cfg, console, journal, collection=key)
    finally:
        if journal is not None:
            journal.close()
    figures: dict[str, Any] = {}
    if not cfg.plan_only and plan.todo_rows:
        from pipelines.core.credentials import (
            CredentialsPlan,
            apply_to_environment,
            resolve_credentials,
        )

        # Decoders read s3:// inputs with the backfill's credentials; an estimate calls no
        # Bedrock, so none are required (an s3:// input without them fails as it would).
        try:
            credentials = resolve_credentials(cfg.bedrock)
        except ConfigError:
            credentials = CredentialsPlan()
        if credentials.dummy:
            apply_to_environment(credentials)
        pipeline = estimate_pipeline(cfg, plan)
        console.say(f"pipeline: {pipeline.describe()}")
        ledger, flushed = plan.ledger, time.monotonic()

        def account(batch: pa.Table) -> None:
            # As a backfill's accounting does: the buffer goes to the file as the run goes (it
            # was flushed only at the end: every asset's delta held in the driver).
            nonlocal flushed
            ledger.account(batch)
            if ledger.due(flushed):
                ledger.flush()
                flushed = time.monotonic()

        console.watch(lambda: plan.ledger.progress)
        try:
            run_pipeline(
                pipeline,
                cfg.ray,
                account,
                batch_size=None,
                worker_env=credentials.env,
            )
        finally:
            console.stop()
    if not cfg.plan_only:
        # Same content as another row: the real run copies the other's points (no call).
        settle_copies(plan, lambda leader, row: leader.points)
    plan.ledger.finalize(cfg.prices)
    estimate = _figures(cfg, plan, time.monotonic() - started, figures)
    path = plan.run_dir / ESTIMATE_FILE
    path.write_text(json.dumps(estimate, indent=2) + "\n")
    plan.ledger.close()
    _summary(console, estimate, path)
    return EstimateResult(plan.run_dir, path, estimate)


def _aimed(cfg: BackfillJobConfig, console: Console) -> BackfillJobConfig:
    """``cfg`` aimed at the physical collection the alias ``qdrant.collection`` stands for, read
    only (:func:`pipelines.collections.aim_collection` would create it): the journal's entries of
    that collection are what a real run would diff against."""
    import dataclasses

    from pipelines.stores import open_store

    q = cfg.qdrant
    if q.physical_collection or not (q.url or (q.path and Path(q.path).exists())):
        return cfg  # named explicitly, or nothing written yet (an embedded store not made)
    try:
        store = open_store(q, cfg.embedding, cfg.segmentation)
        store.open()
        try:
            target = store.resolve_alias(q.collection)
        finally:
            store.close()
    except Exception as exc:  # e.g. an embedded store another process holds
        console.say(
            f"cannot read the store's aliases ({type(exc).__name__}); planning against "
            f"collection {q.collection!r}"
        )
        return cfg
    if target is None:
        return cfg
    return dataclasses.replace(cfg, qdrant=dataclasses.replace(q, collection=target))


def estimate_pipeline(cfg: BackfillJobConfig, plan: BackfillPlan) -> Pipeline:
    """The backfill's decode stage, then a dry embed: the real run's segments, no calls."""
    from pipelines.core.io import InputPolicy
    from pipelines.stages.decode import AssetLimits, DecodeStage
    from pipelines.stages.dry_embed import DryEmbedStage

    res = cfg.resources
    decode = DecodeStage(
        cfg.segmentation,
        cfg.embedding,
        cfg.bedrock.s3_endpoint_url,
        accepts=cfg.usecase.modalities,
        limits=AssetLimits.of(cfg.limits),
        decode=cfg.decode,
        inputs=InputPolicy.for_job(cfg),
        resources=Resources.of(res.decode, batch_size=None),
    )
    dry = DryEmbedStage(cfg.embedding, resources=Resources(num_cpus=res.decode.num_cpus))
    return Pipeline(
        "estimate", plan.source(cfg.segmentation if cfg.decode.split else None), [decode, dry]
    )


def _figures(
    cfg: BackfillJobConfig, plan: BackfillPlan, duration_s: float, extra: dict[str, Any]
) -> dict[str, Any]:
    from pipelines.bedrock import tokens
    from pipelines.core.report import build_report

    report = build_report(plan.ledger, duration_s)
    usage = plan.ledger.usage_by_modality()
    decoded = not cfg.plan_only
    would_embed = report["embedded"] if decoded else plan.todo_rows + plan.copy_rows
    calls = report["bedrock_calls"]
    if cfg.segmentation.mode == "service":
        # One asynchronous job per asset (the service cuts it); seconds and cost are the same.
        calls = report["embedded"] + report["partial"]
    # The real run's preflight: one call when there is anything to embed.
    calls += 1 if decoded and plan.todo_rows else 0
    text_chars = sum(u["text_chars"] for u in usage.values())
    # Pictures sent as images (a document's page images are counted as pages).
    images = sum(u["images"] for m, u in usage.items() if m != "document")
    media_seconds = sum(u["media_seconds"] + u["audio_seconds"] for u in usage.values())
    quota = cfg.bedrock.quota
    est_tokens = (
        text_chars / tokens.CHARS_PER_TOKEN
        + sum(u["images"] for u in usage.values()) * tokens.IMAGE_TOKENS
        + media_seconds * tokens.MEDIA_TOKENS_PER_SECOND
    )
    minutes = max(calls / quota.requests_per_minute, est_tokens / quota.tokens_per_minute)

    def by(name: str, key: str) -> float:
        return float(usage.get(name, {}).get(key, 0.0))

    out: dict[str, Any] = {
        "status": "estimate",
        "mode": "plan_only" if cfg.plan_only else "dry_run",
        "run_id": plan.run_id,
        "usecase": cfg.usecase.name,
        "collection": cfg.qdrant.collection,
        "manifest": cfg.manifest,
        "rows": report["rows"],
        "to_embed": plan.todo_rows + plan.copy_rows,
        "decoded": plan.todo_rows if decoded else 0,
        "same_content": plan.copy_rows,
        "changed": plan.changed,
        "skipped_unchanged": report["skipped_unchanged"],
        "skipped_dead_letter": report["skipped_dead_letter"],
        "skipped_modality": report["skipped_modality"],
        "assets": would_embed,
        "would_dead_letter": report["dead_lettered"] if decoded else None,
        # usecase.partial_assets=keep: assets whose good segments would be kept, the rest failing.
        "would_be_partial": report["partial"] if decoded else None,
    }
    if decoded:
        out.update(
            {
                "segments": report["segments"],
                "pages": int(report["by_modality"].get("document", {}).get("segments", 0)),
                "images": images,
                "text_tokens": math.ceil(text_chars / tokens.CHARS_PER_TOKEN),
                "audio_seconds": round(by("audio", "media_seconds") + _audio_as_input(usage), 3),
                "video_seconds": round(by("video", "media_seconds"), 3),
                # The report's names: the real run's report will hold the same figures.
                "bedrock_calls": calls,
                "cost_usd": report["cost_usd"],
                "wall_clock_s": round(minutes * 60.0, 1),
                "quota": {
                    "requests_per_minute": quota.requests_per_minute,
                    "tokens_per_minute": quota.tokens_per_minute,
                },
            }
        )
    if decoded:
        out.update(_side_by_side(cfg, plan, out))
    out["by_modality"] = report["by_modality"]
    out["duration_s"] = round(duration_s, 3)
    out.update(extra)
    return out


def _side_by_side(
    cfg: BackfillJobConfig, plan: BackfillPlan, out: dict[str, Any]
) -> dict[str, Any]:
    """On-demand and batch inference for the same work: cost at each price table, and time
    (the quota for on demand; for batch, the service's job turnaround, which it bounds by
    ``bedrock.batch.timeout_hours`` but does not promise: docs/batch-inference.md)."""
    b = cfg.bedrock.batch
    segments = int(out.get("segments") or 0)
    jobs = 0 if segments < b.min_records_per_job else math.ceil(segments / b.max_records_per_job)
    # Records left over under the minimum would go on demand; the figure assumes full jobs.
    return {
        "on_demand": {
            "cost_usd": round(plan.ledger.cost_at(cfg.prices), 6),
            "wall_clock_s": out["wall_clock_s"],
        },
        "batch": {
            "cost_usd": round(plan.ledger.cost_at(cfg.prices.for_batch()), 6),
            "jobs": jobs,
            "records": segments,
            "wall_clock_s_at_most": b.timeout_hours * 3600 if jobs else None,
            "fits_a_job": segments >= b.min_records_per_job,
        },
    }


def _audio_as_input(usage: dict[str, dict[str, float]]) -> float:
    """Seconds sent as audio by another modality (an audio-only video)."""
    return sum(u["audio_seconds"] for u in usage.values())


def _summary(console: Console, estimate: dict[str, Any], path: Path) -> None:
    if estimate["mode"] == "plan_only":
        console.say(
            f"plan: {estimate['rows']} rows, {estimate['to_embed']} to embed, "
            f"{estimate['skipped_unchanged']} unchanged, {estimate['skipped_dead_letter']} "
            f"failed before, {estimate['skipped_modality']} other modality "
            f"({estimate['duration_s']:.1f}s)"
        )
    else:
        console.say(
            f"estimate: {estimate['assets']} assets to embed ({estimate['would_dead_letter']} "
            f"would fail), {estimate['segments']} segments, {estimate['pages']} pages, "
            f"{estimate['images']} images, {estimate['text_tokens']} text tokens, "
            f"{estimate['audio_seconds']:.1f}s audio, {estimate['video_seconds']:.1f}s video"
        )
        console.say(
            f"          {estimate['bedrock_calls']} Bedrock calls, ${estimate['cost_usd']:.4f}, "
            f"about {_duration(estimate['wall_clock_s'])} at the configured quota "
            f"({estimate['quota']['requests_per_minute']:g} requests/min)"
        )
        batch = estimate.get("batch") or {}
        console.say(
            f"          on demand ${estimate['on_demand']['cost_usd']:.4f} vs batch "
            f"${batch.get('cost_usd', 0.0):.4f} ({batch.get('jobs', 0)} jobs of at most "
            f"{_duration(float(batch.get('wall_clock_s_at_most') or 0))} each"
            + ("" if batch.get("fits_a_job") else "; too few records for a job: on demand")
            + ")"
        )
    console.say(f"estimate:    {path}")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
