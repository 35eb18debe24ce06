"""Migrations: move an alias to a collection built with new parameters, checked before the switch.

``python -m jobs.migrate alias=docs embedding.dimension=1024 ...`` (``docs/migrations.md``):

1. reads the parameters the alias's collection records (:mod:`pipelines.collections`) and
   compares them with the config's: nothing that changes the vectors (a query purpose only) means
   nothing to do;
2. builds the next version (``docs_v2``), or resumes the one an interrupted migration left:
   ``strategy=reembed`` runs the backfill machinery (:func:`pipelines.backfill.run_backfill`,
   with its rate control, journal and resume) into it; ``strategy=matryoshka`` (only the dimension
   shrinks) first embeds a sample of the old collection's assets at the new dimension and checks
   the truncated old vectors agree, then streams the old vectors into the new collection,
   truncated and renormalised, and copies the journal's entries;
3. catches up what nightly backfills changed meanwhile: an incremental backfill pass of the
   manifest into the new collection;
4. validates it (:mod:`pipelines.evaluate`): points per asset, vector sizes, norms and NaNs, and
   recall@k and MRR of old and new side by side on a query set;
5. switches the alias atomically when every check passes, keeps the old collection, and writes
   ``migration.json`` under the run folder; ``rollback=true`` points the alias back.

``adopt=true`` puts a collection made by an earlier version under a plain name behind an alias of
that name (:func:`adopt`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.backfill import BackfillResult, collection_key, run_backfill
from pipelines.collections import (
    Recorded,
    Say,
    fingerprints_of,
    next_version,
    parameter_changes,
    record_of,
    same_vectors,
    version_of,
)
from pipelines.config.schema import MigrateJobConfig
from pipelines.config.validate import validate_migrate
from pipelines.core.console import Console
from pipelines.core.errors import ConfigError, InfrastructureError
from pipelines.core.journal import Entry, Journal, same_fingerprint
from pipelines.core.ledger import KEPT
from pipelines.core.rows import STORED_POINT
from pipelines.stores import VectorStore, open_store

# The exit code of a migration whose new collection failed validation: the alias was not
# switched (docs/scheduled-backfills.md lists every code).
EXIT_NOT_SWITCHED = 6


@dataclass
class MigrationResult:
    """What a migration (or adoption, or rollback) did: its exit code and report."""

    exit_code: int
    report: dict[str, Any] = field(default_factory=dict)
    report_path: Path | None = None


def run_migration(cfg: MigrateJobConfig) -> MigrationResult:
    """Run one migration, adoption or rollback end to end (see the module docstring). Raises
    ConfigError / ManifestError before any work, InfrastructureError when the store fails."""
    from pipelines.core.credentials import apply_to_environment, resolve_credentials

    started = time.monotonic()
    validate_migrate(cfg)
    console = Console("migrate", quota_rpm=cfg.bedrock.quota.requests_per_minute)
    alias = cfg.alias or cfg.qdrant.collection
    cfg = dataclasses.replace(cfg, qdrant=dataclasses.replace(cfg.qdrant, collection=alias))
    if cfg.adopt or cfg.strategy == "matryoshka":
        # Copies carry the dense vectors only: keyword vectors come with re-embedding.
        cfg = dataclasses.replace(cfg, keywords=dataclasses.replace(cfg.keywords, enabled=False))
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    run_dir = Path(cfg.run_dir) / cfg.usecase.name / f"migrate-{run_id}"
    if cfg.adopt:
        (code, report), file_name = adopt(cfg, console.say), "adoption.json"
    elif cfg.rollback:
        (code, report), file_name = rollback(cfg, console.say), "rollback.json"
    else:
        credentials = resolve_credentials(cfg.bedrock)
        if credentials.dummy:
            apply_to_environment(credentials)
        (code, report), file_name = (
            _migrate(cfg, alias, run_id, run_dir, console.say),
            "migration.json",
        )
    body = {"run_id": run_id, **report, "duration_s": round(time.monotonic() - started, 2)}
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / file_name
    path.write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
    console.say(f"report: {path}")
    return MigrationResult(code, body, path)


# -- plumbing ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _opened(cfg: MigrateJobConfig) -> Iterator[VectorStore]:
    """The store, open only for a step (the embedded store allows one client at a time, and
    every backfill pass opens its own)."""
    store = open_store(cfg.qdrant, cfg.embedding, cfg.segmentation, cfg.keywords)
    store.open()
    try:
        yield store
    finally:
        store.close()


def _key(cfg: MigrateJobConfig, physical: str) -> str:
    return collection_key(dataclasses.replace(cfg, qdrant=_physical(cfg, physical)))


def _physical(cfg: MigrateJobConfig, physical: str) -> Any:
    return dataclasses.replace(cfg.qdrant, collection=physical, physical_collection=None)


def _mark(store: VectorStore, physical: str, **fields: Any) -> None:
    """Update the migration state a collection records."""
    target = store.for_collection(physical)
    held = Recorded.of(target.metadata())
    if held is None:
        return
    held.migration = {**(held.migration or {}), **fields}
    target.set_metadata(held.to_meta())


def _aimed(cfg: MigrateJobConfig, alias: str, physical: str, **more: Any) -> MigrateJobConfig:
    """``cfg`` as a backfill into ``physical`` (not the collection the alias points to)."""
    qdrant = dataclasses.replace(cfg.qdrant, collection=alias, physical_collection=physical)
    return dataclasses.replace(cfg, qdrant=qdrant, parameters_from="config", **more)


def _backfill_figures(result: BackfillResult) -> dict[str, Any]:
    rep = result.report
    keys = ("status", "embedded", "skipped_unchanged", "dead_lettered", "points_written")
    return {
        **{k: rep.get(k) for k in keys},
        "bedrock_calls": rep.get("bedrock_calls", 0),
        "duration_s": rep.get("duration_s"),
        "report": str(result.report_path),
    }


# -- the migration -------------------------------------------------------------------------------


def _migrate(
    cfg: MigrateJobConfig, alias: str, run_id: str, run_dir: Path, say: Say
) -> tuple[int, dict[str, Any]]:
    with _opened(cfg) as store:
        old = store.resolve_alias(alias)
        if old is None:
            if alias in store.collection_names():
                raise ConfigError(
                    "alias",
                    f"{alias!r} is a collection made by an earlier version, not an alias: adopt "
                    f"it first: python -m jobs.migrate adopt=true qdrant.collection={alias} "
                    "(docs/migrations.md)",
                )
            raise ConfigError("alias", f"no alias {alias!r} in the store (nothing to migrate)")
        held = Recorded.of(store.for_collection(old).metadata())
    if held is None:
        raise ConfigError(
            "alias",
            f"collection {old!r} records no parameters; run one backfill through the alias "
            f"{alias!r} first (it records them), then migrate",
        )
    modalities = cfg.usecase.modalities
    old_fps = fingerprints_of(held.embedding, held.segmentation, modalities)
    new_fps = fingerprints_of(cfg.embedding, cfg.segmentation, modalities)
    changes = parameter_changes(held.embedding, held.segmentation, cfg.embedding, cfg.segmentation)
    report: dict[str, Any] = {
        "alias": alias,
        "from": old,
        "strategy": cfg.strategy,
        "changes": {k: list(v) for k, v in changes.items()},
    }
    if same_vectors(old_fps, new_fps):
        if "embedding.query_purpose" in changes:
            before, after = changes["embedding.query_purpose"]
            say(
                f"only the query purpose changes ({before} -> {after}): it is used when "
                f"embedding queries, never stored, so {old!r} needs no migration; searchers "
                f"embed queries with embedding.query_purpose={after}. Nothing done."
            )
            return 0, {**report, "outcome": "nothing_to_do", "reason": "query_purpose_only"}
        say(f"{old!r} already has these parameters: nothing to migrate")
        return 0, {**report, "outcome": "nothing_to_do", "reason": "same_parameters"}
    if cfg.strategy == "matryoshka":
        _check_matryoshka(cfg, held, new_fps)

    if cfg.dry_run or cfg.plan_only:
        return 0, _estimate(cfg, alias, report, say)

    target, resumed = _target(cfg, alias, old, new_fps, run_id)
    report["to"] = target
    report["resumed"] = resumed
    vector_changes = {k: v for k, v in changes.items() if k != "embedding.query_purpose"}
    say(
        f"{'resuming' if resumed else 'building'} {target!r} for alias {alias!r} (now {old!r}): "
        + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in vector_changes.items())
        + f" ({cfg.strategy})"
    )
    calls = 0
    build_started = time.monotonic()
    if cfg.strategy == "matryoshka":
        sample = _matryoshka_sample(cfg, alias, old, target, held, run_dir, say)
        report["matryoshka_sample"] = sample
        calls += sample["bedrock_calls"]
        if not sample["ok"]:
            with _opened(cfg) as store:
                _mark(store, target, status="rejected", reason="matryoshka_sample")
            say(
                "not switched: the sample's truncated vectors disagree with the new dimension's "
                + (
                    f"(min cosine {sample['min_cosine']:.4f} < "
                    f"{1 - cfg.matryoshka.tolerance:.4f}); "
                    if sample.get("min_cosine") is not None
                    else "(no sampled asset was embedded to compare); "
                )
                + "migrate with strategy=reembed"
            )
            return EXIT_NOT_SWITCHED, {**report, "outcome": "not_switched", "calls": calls}
        report["truncated"] = _truncate_copy(cfg, old, target, new_fps, run_id, say)
    else:
        build = run_backfill(_aimed(cfg, alias, target))
        report["build"] = _backfill_figures(build)
        calls += int(build.report.get("bedrock_calls", 0))
        if build.exit_code == 3:
            return 3, {**report, "outcome": "aborted", "calls": calls}
    report["build_s"] = round(time.monotonic() - build_started, 2)
    # What nightly runs changed while the migration ran: one incremental pass of the manifest.
    catch_up = run_backfill(_aimed(cfg, alias, target))
    report["catch_up"] = _backfill_figures(catch_up)
    calls += int(catch_up.report.get("bedrock_calls", 0))
    if catch_up.exit_code == 3:
        return 3, {**report, "outcome": "aborted", "calls": calls}

    validation_started = time.monotonic()
    checks, query_calls = _validate(cfg, alias, old, target, held, say)
    calls += query_calls
    failed_builds = [
        name
        for name in ("build", "catch_up")
        if report.get(name, {}).get("status") not in (None, "done")
    ]
    if failed_builds:
        checks["failures"].append(f"backfill pass {failed_builds[0]} did not end done")
    report["validation"] = checks
    report["validation_s"] = round(time.monotonic() - validation_started, 2)
    report["calls"] = calls
    passed = not checks["failures"]
    with _opened(cfg) as store:
        if passed:
            store.switch_alias(alias, target)
            _mark(store, target, status="switched", switched_at=time.time(), run_id=run_id)
        else:
            _mark(store, target, status="rejected", reasons=checks["failures"])
    if not passed:
        say(f"not switched: {'; '.join(checks['failures'])}. {old!r} still serves {alias!r}")
        return EXIT_NOT_SWITCHED, {**report, "outcome": "not_switched"}
    say(
        f"alias {alias!r} -> {target!r} ({old!r} kept; python -m jobs.migrate "
        f"usecase={cfg.usecase.name} alias={alias} rollback=true switches back)"
    )
    return 0, {**report, "outcome": "switched"}


def _check_matryoshka(cfg: MigrateJobConfig, held: Recorded, new_fps: dict[str, str]) -> None:
    """``strategy=matryoshka`` needs a smaller dimension and nothing else that changes vectors."""
    shrunk = dataclasses.replace(held.embedding, dimension=cfg.embedding.dimension)
    only_dimension = same_vectors(
        fingerprints_of(shrunk, held.segmentation, cfg.usecase.modalities), new_fps
    )
    if not only_dimension or cfg.embedding.dimension >= held.embedding.dimension:
        raise ConfigError(
            "strategy",
            "matryoshka truncates stored vectors: it needs a smaller embedding.dimension "
            f"(the collection has {held.embedding.dimension}) and no other parameter that "
            "changes the vectors; use strategy=reembed",
        )


def _target(
    cfg: MigrateJobConfig, alias: str, old: str, new_fps: dict[str, str], run_id: str
) -> tuple[str, bool]:
    """The collection to build: the one an interrupted (or rejected, or rolled back) migration
    from ``old`` to the same parameters left, or the next version, created with its record."""
    with _opened(cfg) as store:
        names = store.collection_names()
        for name in sorted(names, key=lambda n: version_of(alias, n) or 0, reverse=True):
            if version_of(alias, name) is None or name == old:
                continue
            rec = Recorded.of(store.for_collection(name).metadata())
            if (
                rec is not None
                and rec.migration is not None
                and rec.migration.get("from") == old
                and rec.migration.get("status") != "switched"
                and rec.fingerprints.keys() == new_fps.keys()
                and same_vectors(rec.fingerprints, new_fps)
            ):
                return name, True
        target = next_version(names, alias)
        created = store.for_collection(target, cfg.embedding.dimension)
        created.ensure_collection()
        created.finish()
        migration = {"from": old, "strategy": cfg.strategy, "status": "building", "run_id": run_id}
        created.set_metadata(record_of(cfg, alias, migration).to_meta())
    return target, False


# -- Matryoshka ----------------------------------------------------------------------------------


def _matryoshka_sample(
    cfg: MigrateJobConfig,
    alias: str,
    old: str,
    target: str,
    held: Recorded,
    run_dir: Path,
    say: Say,
) -> dict[str, Any]:
    """Embed assets spread over the old collection at the new dimension (a backfill into a
    scratch collection, at most ``matryoshka.sample_size`` calls with its preflight) and compare
    each real vector with the truncated, renormalised old one (same point ids)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipelines.core.incremental import content_versions
    from pipelines.core.manifest import iter_manifest

    assert cfg.manifest is not None
    budget = cfg.matryoshka.sample_size - 1  # the backfill's preflight makes one call
    journal = Journal(cfg.state.path)
    try:
        total = journal.count(_key(cfg, old), "embedded")
        points_per_asset = max(1, _points_held(cfg, old) // max(1, total))
        stride = max(1, total * points_per_asset // max(1, budget))
        picked: dict[str, Entry] = {}
        spent = 0
        position = 0
        for chunk in journal.entries(_key(cfg, old)):
            for entry in chunk:
                position += 1
                if entry.outcome != "embedded" or (position - 1) % stride:
                    continue
                if spent + entry.points <= budget:
                    picked[entry.asset_id] = entry
                    spent += entry.points
    finally:
        journal.close()
    # The sampled rows of the manifest, read in batches (the sample is small, the manifest not).
    schema: pa.Schema | None = None
    rows: list[dict[str, Any]] = []
    wanted = pa.array(sorted(picked), pa.string())
    for _, batch in iter_manifest(cfg.manifest, cfg.bedrock.s3_endpoint_url):
        schema = batch.schema
        rows.extend(batch.filter(pc.is_in(batch.column("asset_id"), wanted)).to_pylist())
    if rows:
        assert schema is not None
        manifest_schema = schema
        table = content_versions(pa.Table.from_pylist(rows, manifest_schema))
        versions = table.column("content_version").to_pylist()
        rows = [
            r
            for r, v in zip(table.to_pylist(), versions, strict=True)
            if v == picked[r["asset_id"]].content_version
        ]
    if not rows:
        raise ConfigError(
            "matryoshka.sample_size",
            f"no asset of {old!r} fits a sample of {cfg.matryoshka.sample_size} calls "
            "(with the manifest's versions); raise it",
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    # The sample's manifest lives in the run folder: its files are still read from where the
    # manifest's are (relative uris made absolute, the manifest's roots kept).
    from pipelines.core.io import InputPolicy, InputRefused, local_file_path

    policy = InputPolicy.for_job(cfg)
    for row in rows:
        uri = row.get("uri")
        if uri and not str(uri).startswith("s3://"):
            with contextlib.suppress(InputRefused, ValueError):
                row["uri"] = policy.check(str(uri))
    roots = list(cfg.inputs.allowed_roots)
    manifest_path = local_file_path(cfg.manifest)
    if not roots and manifest_path is not None:
        roots = [str(Path(manifest_path).resolve().parent)]
    inputs = dataclasses.replace(cfg.inputs, allowed_roots=roots)
    sample_manifest = run_dir / "matryoshka_sample.parquet"
    pq.write_table(pa.Table.from_pylist(rows, manifest_schema), sample_manifest)
    scratch = f"{target}__sample"
    say(f"matryoshka sample: {len(rows)} assets embedded at {cfg.embedding.dimension}-d")
    result = run_backfill(
        _aimed(cfg, alias, scratch, manifest=str(sample_manifest), prune=False, inputs=inputs)
    )
    cosines: list[float] = []
    with _opened(cfg) as store:
        sample_store = store.for_collection(scratch, cfg.embedding.dimension)
        old_store = store.for_collection(old, held.embedding.dimension)
        for batch in sample_store.scan(batch_size=256):
            ids = batch.column("point_id").to_pylist()
            held_vectors = old_store.vectors_of(ids)
            for point, vector in zip(ids, batch.column("vector").to_pylist(), strict=True):
                if point in held_vectors and vector is not None:
                    short = np.asarray(_truncated(held_vectors[point], cfg.embedding.dimension))
                    real = np.asarray(vector, dtype=np.float64)
                    cosines.append(float(short @ real / (np.linalg.norm(real) or 1.0)))
        sample_store.delete_collection()
    journal = Journal(cfg.state.path)
    try:
        journal.forget(_key(cfg, scratch), list(picked))
    finally:
        journal.close()
    floor = 1.0 - cfg.matryoshka.tolerance
    return {
        "assets": len(rows),
        "points": len(cosines),
        "bedrock_calls": int(result.report.get("bedrock_calls", 0)),
        "min_cosine": round(min(cosines), 6) if cosines else None,
        "mean_cosine": round(float(np.mean(cosines)), 6) if cosines else None,
        "tolerance": cfg.matryoshka.tolerance,
        "ok": bool(cosines) and min(cosines) >= floor and result.exit_code == 0,
    }


def _points_held(cfg: MigrateJobConfig, physical: str) -> int:
    with _opened(cfg) as store:
        return store.for_collection(physical).count()


def _truncated(vector: list[float], dimension: int) -> list[float]:
    from pipelines.evaluate import truncate

    return truncate(vector, dimension)


def _truncate_copy(
    cfg: MigrateJobConfig,
    old: str,
    target: str,
    new_fps: dict[str, str],
    run_id: str,
    say: Say,
) -> dict[str, Any]:
    """Stream the old collection's points into the new one, vectors truncated to the new
    dimension and renormalised, fingerprints rewritten; then copy the journal's entries (the
    catch-up pass then embeds only what changed since). Idempotent: same point ids."""
    dim = cfg.embedding.dimension
    copied = 0
    with _opened(cfg) as store:
        source = store.for_collection(old)
        sink = store.for_collection(target, dim)
        for batch in source.scan(batch_size=512):
            vectors = np.asarray(batch.column("vector").to_pylist(), dtype=np.float64)[:, :dim]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms > 0, norms, 1.0)
            payloads = []
            for text in batch.column("payload_json").to_pylist():
                payload = json.loads(text) if text else {}
                modality = payload.get("modality")
                if modality in new_fps:
                    payload["fingerprint"] = new_fps[modality]
                payloads.append(json.dumps(payload, sort_keys=True))
            rows = batch.to_pylist()
            for row, vector, payload_json in zip(rows, vectors, payloads, strict=True):
                row["vector"] = vector.tolist()
                row["payload_json"] = payload_json
            copied += sink.put_points(STORED_POINT.table(rows))
    entries = _copy_journal(cfg, old, target, new_fps, run_id)
    say(f"truncated {copied} points into {target!r} ({dim}-d); {entries} journal entries copied")
    return {"points": copied, "journal_entries": entries}


def _copy_journal(
    cfg: MigrateJobConfig, old: str, target: str, fingerprints: dict[str, str], run_id: str
) -> int:
    """The old collection's journal entries under the new collection's key (those whose points
    stay, embedded or partial, with the new fingerprints: their points were just copied), and its
    fingerprints."""
    journal = Journal(cfg.state.path)
    old_key, new_key = _key(cfg, old), _key(cfg, target)
    try:
        journal.acquire(new_key, run_id, cfg.state.lock_stale_after_s)
        try:
            copied = 0
            for chunk in journal.entries(old_key):  # its own snapshot: safe to write meanwhile
                entries = [
                    dataclasses.replace(e, fingerprint=fingerprints.get(e.modality or ""))
                    if e.outcome in KEPT and e.modality in fingerprints
                    else e
                    for e in chunk
                ]
                copied += journal.record(new_key, run_id, entries)
            journal.record_fingerprints(new_key, fingerprints)
            return copied
        finally:
            journal.release(new_key, run_id)
    finally:
        journal.close()


# -- estimate ------------------------------------------------------------------------------------


def _estimate(
    cfg: MigrateJobConfig, alias: str, report: dict[str, Any], say: Say
) -> dict[str, Any]:
    """What the migration would call and cost, nothing called or written (``dry_run=true``;
    ``plan_only=true`` plans without decoding). Re-embedding: the backfill's estimate of the
    whole manifest into a collection nothing holds yet, plus the validation's queries (each
    embedded once per side). Matryoshka: its sample and one embedding per query."""
    from pipelines.estimate import run_estimate
    from pipelines.evaluate import load_queries

    val = cfg.validation
    queries = len(load_queries(val.queries)) if val.queries else val.sample_queries
    if cfg.strategy == "matryoshka":
        calls = cfg.matryoshka.sample_size + queries
        say(
            f"estimate: at most {calls} Bedrock calls ({cfg.matryoshka.sample_size} for the "
            f"sample, {queries} queries); the stored vectors are truncated without calls"
        )
        return {**report, "outcome": "estimate", "bedrock_calls": calls}
    fresh = dataclasses.replace(
        cfg, qdrant=dataclasses.replace(cfg.qdrant, physical_collection=f"{alias}__estimate")
    )
    est = run_estimate(fresh).estimate
    out = {**report, "outcome": "estimate", "estimate": est, "validation_query_calls": 2 * queries}
    if not cfg.plan_only:
        out["bedrock_calls"] = int(est["bedrock_calls"]) + 2 * queries
        out["cost_usd"] = est["cost_usd"]  # the build's; the queries' few calls are not priced
        say(
            f"estimate: {out['bedrock_calls']} Bedrock calls ({est['bedrock_calls']} to build, "
            f"{2 * queries} to validate), ${est['cost_usd']:.4f} to build"
        )
    return out


# -- validation ----------------------------------------------------------------------------------


def _validate(
    cfg: MigrateJobConfig, alias: str, old: str, target: str, held: Recorded, say: Say
) -> tuple[dict[str, Any], int]:
    """Every check before the switch; ``failures`` lists what failed (empty: switch)."""
    from pipelines.evaluate import (
        check_vectors,
        embed_queries,
        evaluate,
        load_queries,
        sample_manifest_queries,
        truncate,
    )

    assert cfg.manifest is not None
    val = cfg.validation
    failures: list[str] = []
    with _opened(cfg) as store:
        new_store = store.for_collection(target, cfg.embedding.dimension)
        vectors = check_vectors(new_store, cfg.embedding.dimension, val.norm_tolerance)
        if not vectors.ok:
            failures.append(
                f"vectors: {vectors.wrong_size} of the wrong size, {vectors.non_finite} with "
                f"NaN or inf, {vectors.bad_norm} not of norm 1 (of {vectors.points})"
            )
        points = _points_check(cfg, store, old, target, held)
    if not points["ok"]:
        failures.append(
            f"points: {points['mismatched']} assets with other point counts, "
            f"{points['missing']} assets the old collection holds missing from the new one"
        )
    # Retrieval: the same queries against old and new, each embedded as searchers would.
    queries = (
        load_queries(val.queries)
        if val.queries
        else sample_manifest_queries(
            cfg.manifest, cfg.bedrock.s3_endpoint_url, val.sample_queries, cfg.usecase.modalities
        )
    )
    old_emb, old_seg = held.embedding, held.segmentation
    if cfg.strategy == "matryoshka":
        # The sample check showed truncated vectors agree with the new dimension's: queries are
        # embedded once, at the old dimension, and truncated for the new collection.
        old_vectors, calls = embed_queries(queries, old_emb, old_seg, cfg.bedrock)
        dim = cfg.embedding.dimension
        new_vectors = [truncate(v, dim) if v is not None else None for v in old_vectors]
    else:
        new_vectors, calls = embed_queries(queries, cfg.embedding, cfg.segmentation, cfg.bedrock)
        if old_emb == cfg.embedding and old_seg == cfg.segmentation:
            old_vectors = new_vectors
        else:
            old_vectors, more = embed_queries(queries, old_emb, old_seg, cfg.bedrock)
            calls += more
    with _opened(cfg) as store:
        before = evaluate(store.for_collection(old), queries, old_vectors, val.k)
        after = evaluate(store.for_collection(target), queries, new_vectors, val.k)
    if queries:
        if after.recall_at_k < before.recall_at_k - val.max_recall_drop:
            failures.append(
                f"recall@{val.k} {after.recall_at_k:.3f} < {before.recall_at_k:.3f} (old) - "
                f"{val.max_recall_drop} (validation.max_recall_drop)"
            )
        if after.mrr < before.mrr - val.max_mrr_drop:
            failures.append(
                f"MRR {after.mrr:.3f} < {before.mrr:.3f} (old) - {val.max_mrr_drop} "
                "(validation.max_mrr_drop)"
            )
    say(
        f"validation: {vectors.points} vectors checked, {points['assets']} assets' points; "
        f"{len(queries)} queries: recall@{val.k} old {before.recall_at_k:.3f} new "
        f"{after.recall_at_k:.3f}, MRR old {before.mrr:.3f} new {after.mrr:.3f}"
    )
    checks = {
        "vectors": vectors.as_dict(),
        "points": points,
        "retrieval": {
            "queries": len(queries),
            "source": val.queries or f"sampled from the manifest ({val.sample_queries})",
            "query_calls": calls,
            "old": before.as_dict(),
            "new": after.as_dict(),
            "max_recall_drop": val.max_recall_drop,
            "max_mrr_drop": val.max_mrr_drop,
        },
        "failures": failures,
    }
    return checks, calls


def _points_check(
    cfg: MigrateJobConfig,
    store: VectorStore,
    old: str,
    target: str,
    held: Recorded,
) -> dict[str, Any]:
    """Points per asset: the new collection holds what its journal says for every asset; with
    the same segmentation, as many as the old collection holds of the same version; and every
    asset the old collection holds that the manifest still lists is in the new one."""
    from pipelines.core.manifest import iter_asset_ids

    same_segments = (
        held.segmentation == cfg.segmentation
        and held.embedding.video_embedding_mode == cfg.embedding.video_embedding_mode
    )
    new_store, old_store = store.for_collection(target), store.for_collection(old)
    journal = Journal(cfg.state.path)
    old_key, new_key = _key(cfg, old), _key(cfg, target)
    assets = mismatched = missing = 0
    examples: list[str] = []
    try:
        for chunk in journal.entries(new_key):
            done = [e for e in chunk if e.outcome in KEPT]
            ids = [e.asset_id for e in done]
            counts = new_store.count_by_asset(ids)
            before = journal.lookup(old_key, ids) if same_segments else {}
            # Counts compare only between whole assets: a partial asset in either collection
            # may lack segments the other holds (a page refused once, embedded the next time).
            comparable = [
                e.asset_id
                for e in done
                if (o := before.get(e.asset_id)) is not None
                and e.outcome == o.outcome == "embedded"
                and o.content_version == e.content_version
            ]
            old_counts = old_store.count_by_asset(comparable) if comparable else {}
            for e in done:
                assets += 1
                bad = counts.get(e.asset_id, 0) != e.points or (
                    e.asset_id in old_counts and old_counts[e.asset_id] != counts.get(e.asset_id)
                )
                if bad:
                    mismatched += 1
                    if len(examples) < 10:
                        examples.append(e.asset_id)
        # Only the assets the manifest still lists (streamed into the reader's own table).
        assert cfg.manifest is not None
        listed = iter_asset_ids(cfg.manifest, cfg.bedrock.s3_endpoint_url)
        for chunk in journal.entries(old_key, only=listed):
            held_ids = [e.asset_id for e in chunk if e.outcome in KEPT]
            now = journal.lookup(new_key, held_ids)
            for asset_id in held_ids:
                entry = now.get(asset_id)
                if entry is None or entry.outcome not in KEPT:
                    missing += 1
                    if len(examples) < 10:
                        examples.append(asset_id)
    finally:
        journal.close()
    return {
        "assets": assets,
        "against": "old collection and journal" if same_segments else "journal (new segments)",
        "mismatched": mismatched,
        "missing": missing,
        "examples": examples,
        "ok": mismatched == 0 and missing == 0,
    }


# -- rollback and adoption -----------------------------------------------------------------------


def rollback(cfg: MigrateJobConfig, say: Say) -> tuple[int, dict[str, Any]]:
    """Point the alias back at the collection the last migration switched it from."""
    alias = cfg.qdrant.collection
    with _opened(cfg) as store:
        current = store.resolve_alias(alias)
        if current is None:
            raise ConfigError("alias", f"no alias {alias!r} in the store")
        rec = Recorded.of(store.for_collection(current).metadata())
        previous = rec.migration.get("from") if rec and rec.migration else None
        if not previous or previous not in store.collection_names():
            raise ConfigError(
                "rollback",
                f"alias {alias!r} points to {current!r}, which no migration built from a "
                "collection that still exists: nothing to roll back to",
            )
        store.switch_alias(alias, previous)
        _mark(store, current, status="rolled_back", rolled_back_at=time.time())
    say(f"alias {alias!r} -> {previous!r} again ({current!r} kept)")
    return 0, {"alias": alias, "outcome": "rolled_back", "from": current, "to": previous}


def adopt(cfg: MigrateJobConfig, say: Say) -> tuple[int, dict[str, Any]]:
    """Put the plain-named collection ``qdrant.collection`` (made by an earlier version) behind
    an alias of its name: copy it to the next version (same points, ids and payloads: no
    Bedrock call), copy its journal entries, check the counts, drop the plain collection and
    create the alias. Searchers see the collection missing between the drop and the alias (the
    two calls after the copy): run it when they can retry."""
    name = cfg.qdrant.collection
    fps = fingerprints_of(cfg.embedding, cfg.segmentation, cfg.usecase.modalities)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-adopt"
    journal = Journal(cfg.state.path)
    old_key = _key(cfg, name)
    try:
        with _opened(cfg) as store:
            if store.resolve_alias(name) is not None:
                say(f"{name!r} is already an alias (of {store.resolve_alias(name)!r})")
                return 0, {"alias": name, "outcome": "nothing_to_do"}
            names = store.collection_names()
            if name not in names:
                raise ConfigError("qdrant.collection", f"no collection named {name!r} to adopt")
            target = next_version(names, name)
            new_key = _key(cfg, target)
            journal.acquire(old_key, run_id, cfg.state.lock_stale_after_s)
            try:
                _check_adoptable(journal, old_key, fps, name)
                plain = store.for_collection(name)
                sink = store.for_collection(target, cfg.embedding.dimension)
                sink.ensure_collection()
                sink.finish()
                copied = 0
                for batch in plain.scan(batch_size=512):
                    _check_batch(batch, fps, cfg.embedding.dimension, name, sink)
                    copied += sink.put_points(batch)
                held, now = plain.count(), sink.count()
                if held != now:
                    raise InfrastructureError(
                        f"adoption of {name!r}: {target!r} holds {now} points, {name!r} {held}; "
                        "nothing dropped, run it again"
                    )
                rec = record_of(cfg, name, {"status": "adopted", "adopted_from": name})
                sink.set_metadata(rec.to_meta())
            finally:
                journal.release(old_key, run_id)
            for chunk in journal.entries(old_key):
                journal.record(new_key, run_id, chunk)
            journal.record_fingerprints(new_key, fps)
            plain.delete_collection()
            store.create_alias(name, target)
    finally:
        journal.close()
    say(f"adopted {name!r}: its {copied} points are in {target!r}, behind the alias {name!r}")
    return 0, {"alias": name, "outcome": "adopted", "to": target, "points": copied}


def _check_adoptable(journal: Journal, key: str, fps: dict[str, str], name: str) -> None:
    held = journal.fingerprints(key)
    for modality, fp in held.items():
        if modality in fps and not same_fingerprint(fp, fps[modality]):
            raise ConfigError(
                "embedding",
                f"collection {name!r} holds {modality} vectors made with "
                f"{fp.split('|', 1)[-1]}; adopt it with the parameters it was built with",
            )


def _check_batch(
    batch: pa.Table, fps: dict[str, str], dimension: int, name: str, sink: VectorStore
) -> None:
    """Every point of a plain collection being adopted has the config's size and fingerprint."""
    for row in batch.select(["vector", "payload_json"]).to_pylist():
        payload = json.loads(row["payload_json"] or "{}")
        modality, fp = payload.get("modality"), payload.get("fingerprint")
        size = len(row["vector"] or [])
        wrong_fp = modality in fps and fp is not None and not same_fingerprint(fp, fps[modality])
        if size != dimension or wrong_fp:
            sink.delete_collection()
            raise ConfigError(
                "embedding",
                f"collection {name!r} holds {size}-d {modality} vectors made with "
                f"{str(fp).split('|', 1)[-1]}; adopt it with the parameters it was built with "
                "(usecase=..., embedding.*, segmentation.*)",
            )
