"""The backfill's batch inference path (``bedrock.mode=batch``): stage, submit, wait, collect.

One run, driven from :func:`pipelines.backfill._run_locked`:

1. **collect** the collection's jobs the journal holds from earlier runs: an ended job's output
   records are written (same point ids and payloads as on demand) for the assets this run still
   has to embed, at the same content version; a job still running keeps its assets out of this
   run (they end ``pending``);
2. **stage** the remaining assets: decode, then
   :class:`~pipelines.stages.stage_records.BatchRecordStage`; the driver spools the records
   (JSONL lines, and the record -> segment mapping as Parquet) in the run folder;
3. **pack and submit**: whole assets into jobs of ``min..max_records_per_job`` records, files of
   at most ``max_records_per_file`` records and ``max_bytes_per_file`` bytes; each job is recorded
   in the journal (name, client token, URIs, mapping) *before* it is submitted, with a name and
   token derived from its records, so a killed run is never paid twice. Records too few for a
   job go on demand in the same run;
4. **wait** up to ``bedrock.batch.wait_s`` (polling with backoff through the retry helper) and
   collect what ended; the rest stays for the next run, which exits ``pending`` (exit 7) until
   then.

See ``docs/batch-inference.md``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.core import codes
from pipelines.core.errors import InfrastructureError, RecordError
from pipelines.core.journal import BatchJobEntry, Journal
from pipelines.core.rows import ASSET, EMBEDDED, SEGMENT_COLUMNS, dead_letter_row

if TYPE_CHECKING:
    from pipelines.bedrock.batch import BatchJobClient, JobState
    from pipelines.config.schema import BackfillJobConfig
    from pipelines.planning import BackfillPlan
    from pipelines.stores import VectorStore

# Columns of the record -> segment mapping (a job's Parquet): the segment without its media.
_MAP_COLUMNS = [c for c in SEGMENT_COLUMNS if c != "input_bytes"] + ["record_id"]
# Dead-letter codes of records a job did not embed, by the job's end state (transient: the next
# run stages them again).
_JOB_END_CODES = {
    "Failed": codes.BATCH_JOB_FAILED,
    "Stopped": codes.BATCH_JOB_STOPPED,
    "Expired": codes.BATCH_JOB_EXPIRED,
    "PartiallyCompleted": codes.BATCH_RECORD_MISSING,
    "Completed": codes.BATCH_RECORD_MISSING,
}


class _StillRunning(Exception):
    """Some job has not ended yet (the poll loop retries on it)."""


@dataclass
class BatchOutcome:
    """What the batch path did in one run (for the report)."""

    jobs_submitted: int = 0
    jobs_found: int = 0
    jobs_collected: int = 0
    jobs_pending: list[str] = field(default_factory=list)
    records_staged: int = 0
    records_collected: int = 0
    records_failed: int = 0
    on_demand_assets: list[str] = field(default_factory=list)
    job_states: dict[str, str] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        return {
            "jobs_submitted": self.jobs_submitted,
            "jobs_found_not_resubmitted": self.jobs_found,
            "jobs_collected": self.jobs_collected,
            "jobs_pending": len(self.jobs_pending),
            "records_staged": self.records_staged,
            "records_collected": self.records_collected,
            "records_failed": self.records_failed,
            "assets_sent_on_demand": len(self.on_demand_assets),
            "job_states": self.job_states,
        }


class BatchDriver:
    """The batch path of one run (see the module docstring). Used from the driver only."""

    def __init__(
        self,
        cfg: BackfillJobConfig,
        plan: BackfillPlan,
        store: VectorStore,
        journal: Journal,
        account: Callable[[pa.Table, str | None], None],
        say: Callable[[str], None],
        client: BatchJobClient | None = None,
    ) -> None:
        from pipelines.bedrock.batch import BatchJobClient
        from pipelines.core.io import s3_client

        self.cfg, self.plan, self.store, self.journal = cfg, plan, store, journal
        self.account, self.say = account, say
        self.batch = cfg.bedrock.batch
        self.client = client or BatchJobClient(cfg.bedrock, cfg.embedding.model_id)
        self.s3 = s3_client(cfg.bedrock.s3_endpoint_url, cfg.bedrock.region)
        assert cfg.bedrock.s3_staging_uri is not None
        self.staging = cfg.bedrock.s3_staging_uri.rstrip("/")
        self.folder = plan.run_dir / "batch"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.maps = Path(cfg.state.path) / "batch"
        self.maps.mkdir(parents=True, exist_ok=True)
        self.outcome = BatchOutcome()
        # Which assets this run still embeds, and at which version, is the ledger's to say
        # (RunLedger.still_todo): nothing per asset is held here.
        # Jobs of this run and earlier ones that have not ended: name -> journal entry.
        self.running: dict[str, BatchJobEntry] = {}
        # Assets whose failed records are retried on demand (bedrock.batch.on_failed_records).
        self.retry_on_demand: set[str] = set()
        self.guard: Any = None

    # -- the quota guard: batch jobs in progress per account ------------------------------------

    def attach_guard(self, guard: Any) -> None:
        self.guard = guard

    def _slot(self, name: str) -> bool:
        if self.guard is None:
            return True
        lease = 3600.0 * (self.batch.timeout_hours + 1)
        return bool(
            self.guard.ask(
                "acquire_batch_job", name, lease, self.cfg.bedrock.quota.batch_max_concurrent_jobs
            )
        )

    def _release(self, name: str) -> None:
        if self.guard is not None:
            self.guard.tell("release_batch_job", name)

    # -- 1. earlier jobs ------------------------------------------------------------------------

    def adopt_open_jobs(self) -> None:
        """Take up the journal's jobs of this collection: find each one (by ARN, else by name,
        else submit it again with its token: the service returns the same job)."""
        for entry in self.journal.open_batch_jobs(self.plan.collection):
            state = self._locate(entry)
            if state is None:
                continue
            self.outcome.jobs_found += 1
            self.running[entry.name] = entry
            self._slot(entry.name)

    def _locate(self, entry: BatchJobEntry) -> JobState | None:
        if entry.job_arn:
            return self.client.get(entry.job_arn)
        found = self.client.find(entry.name)
        if found is None:
            # Recorded but never submitted (killed in between): submit it now, same token.
            arn = self.client.create(
                entry.name, entry.client_token, entry.input_uri, entry.output_uri
            )
            found = self.client.get(arn)
            self.outcome.jobs_submitted += 1
        self.journal.update_batch_job(entry.name, found.status, found.arn)
        return found

    def busy_assets(self) -> set[str]:
        """Assets of this run that a running job holds (at the same content version)."""
        busy: set[str] = set()
        for entry in self.running.values():
            table = pq.read_table(entry.records_path, columns=["asset_id", "content_version"])
            ids = table.column("asset_id").to_pylist()
            todo = self.plan.ledger.still_todo(sorted(set(ids)))
            for a, v in zip(ids, table.column("content_version").to_pylist(), strict=True):
                if a in todo and todo[a] == v:
                    busy.add(a)
        return busy

    # -- 2-3. stage, pack, submit ---------------------------------------------------------------

    def spool(self) -> _Spool:
        return _Spool(self.folder, self.account)

    def submit(self, spool: _Spool) -> None:
        """Pack the spooled records into jobs, journal and submit them; records too few for a
        job are left for the on-demand path (:attr:`BatchOutcome.on_demand_assets`)."""
        spool.close()
        self.outcome.records_staged = spool.records
        for group, assets in self._pack(spool):
            if len(group) < self.batch.min_records_per_job:
                self.outcome.on_demand_assets.extend(assets)
                continue
            self._submit_group(group)

    def _pack(self, spool: _Spool) -> Iterator[tuple[list[tuple[dict[str, Any], str]], list[str]]]:
        """Groups of ``(mapping row, JSONL line)`` of whole assets (an asset over the maximum
        is cut), each at most ``max_records_per_job``; the last one may be under the minimum."""
        limit = self.batch.max_records_per_job
        group: list[tuple[dict[str, Any], str]] = []
        assets: list[str] = []
        for asset_id, records in spool.by_asset(skip=spool.failed):
            if group and len(group) + len(records) > limit:
                yield group, assets
                group, assets = [], []
            assets.append(asset_id)
            for rec in records:
                group.append(rec)
                if len(group) >= limit:
                    yield group, assets
                    group, assets = [], [asset_id]
        if group:
            yield group, assets

    def _submit_group(self, group: list[tuple[dict[str, Any], str]]) -> None:
        from pipelines.bedrock.batch import job_identity
        from pipelines.core.io import split_s3_uri

        ids = [row["record_id"] for row, _ in group]
        attempt = 1
        name, token = job_identity(self.plan.collection, ids)
        known = self.journal.batch_job(name)
        while known is not None and known.status == "collected":
            # The same records ended in a job already (expired, failed): a new job.
            attempt += 1
            name, token = job_identity(self.plan.collection, ids, attempt)
            known = self.journal.batch_job(name)
        if known is not None and known.status != "collected":
            # Staged by a run that was killed: the same records, the same job.
            if name not in self.running:
                state = self._locate(known)
                if state is not None:
                    self.running[name] = known
                    self.outcome.jobs_found += 1
            return
        prefix = f"{self.staging}/batch/{name}"
        entry = BatchJobEntry(
            name=name,
            collection=self.plan.collection,
            client_token=token,
            job_arn=None,
            input_uri=f"{prefix}/input/",
            output_uri=f"{prefix}/output/",
            records_path=str((self.maps / f"{name}.parquet").resolve()),
            records=len(group),
            status="staged",
            run_id=self.plan.run_id,
        )
        pq.write_table(
            pa.Table.from_pylist([row for row, _ in group], schema=_map_schema()),
            entry.records_path,
        )
        bucket, key = split_s3_uri(entry.input_uri)
        for n, payload in enumerate(_files(group, self.batch)):
            self.s3.put_object(Bucket=bucket, Key=f"{key}records-{n:05d}.jsonl", Body=payload)
        # In the journal before the call: a run killed during it finds the job by name.
        self.journal.add_batch_job(entry)
        if not self._slot(name):
            self.say(
                f"batch: {name} staged, not submitted: bedrock.quota.batch_max_concurrent_jobs "
                "jobs are in progress; the next run submits it"
            )
            self.running[name] = entry
            return
        arn = self.client.create(name, token, entry.input_uri, entry.output_uri)
        self.journal.update_batch_job(name, "Submitted", arn)
        self.running[name] = BatchJobEntry(**{**entry.__dict__, "job_arn": arn})
        self.outcome.jobs_submitted += 1
        self.say(f"batch: submitted {name} ({len(group)} records)")

    # -- 4. wait and collect --------------------------------------------------------------------

    def wait_and_collect(self, wait_s: float) -> None:
        """Collect every ended job; poll the others with backoff for up to ``wait_s`` seconds."""
        from pipelines.core.retry import RetryPolicy, retry_call

        def sweep() -> None:
            for name in list(self.running):
                entry = self.running[name]
                state = self._locate(entry) if not entry.job_arn else self.client.get(entry.job_arn)
                if state is None:
                    continue
                if entry.job_arn != state.arn:
                    entry = self.running[name] = BatchJobEntry(
                        **{**entry.__dict__, "job_arn": state.arn}
                    )
                self.journal.update_batch_job(name, state.status, state.arn)
                if state.ended:
                    self.collect(entry, state)
                    del self.running[name]
            if self.running:
                raise _StillRunning()

        policy = RetryPolicy(
            max_attempts=None,
            deadline_s=wait_s,
            base_s=self.batch.poll_min_s,
            cap_s=self.batch.poll_max_s,
        )
        with contextlib.suppress(_StillRunning):
            retry_call(sweep, lambda exc: isinstance(exc, _StillRunning), policy)
        self.outcome.jobs_pending = sorted(self.running)

    def collect(self, entry: BatchJobEntry, state: JobState) -> None:
        """Write an ended job's records (for assets this run still embeds, at the same version),
        dead-letter its failed ones with the service's code, and mark it collected."""
        from pipelines.bedrock.batch import output_lines, read_manifest, service_code
        from pipelines.stages.write import WriteStage

        mapping = pq.read_table(entry.records_path)
        rows = {r["record_id"]: r for r in mapping.to_pylist()}  # one job's records
        todo = self.plan.ledger.still_todo(sorted({r["asset_id"] for r in rows.values()}))
        wanted = {
            rid: r
            for rid, r in rows.items()
            if r["asset_id"] in todo and todo[r["asset_id"]] == r["content_version"]
        }
        folder = f"{state.output_uri.rstrip('/')}/{state.job_id}"
        manifest = read_manifest(self.s3, folder)
        self.outcome.job_states[entry.name] = state.status
        write = WriteStage(self.store, batch_size=self.cfg.qdrant.batch_size)
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        failed: dict[str, list[dict[str, Any]]] = {}

        def flush() -> None:
            if out:
                self.account(write.process(EMBEDDED.table(out)), "batch")
                out.clear()

        lines = (
            output_lines(self.s3, folder)
            if manifest is not None or state.status != "Failed"
            else iter(())
        )
        for _, line in lines:
            rid = line.get("recordId")
            if not isinstance(rid, str) or rid in seen or rid not in wanted:
                continue
            row = wanted[rid]
            seen.add(rid)
            if "modelOutput" in line:
                produced = self._embedded(row, line["modelOutput"])
                if produced is not None:
                    out.extend(produced)
                    self.outcome.records_collected += 1
                else:
                    failed.setdefault(row["asset_id"], []).append(
                        _failure(
                            row, codes.MALFORMED_RESPONSE, "the record's modelOutput is unusable"
                        )
                    )
            else:
                code, message = service_code(line.get("error"))
                failed.setdefault(row["asset_id"], []).append(
                    _failure(
                        row, codes.from_service_code(code), f"batch job {entry.name}: {message}"
                    )
                )
            if len(out) >= 512:
                flush()
        missing_code = _JOB_END_CODES.get(state.status, codes.BATCH_RECORD_MISSING)
        for rid, row in wanted.items():
            if rid not in seen:
                why = f"batch job {entry.name} ended {state.status} without this record" + (
                    f": {state.message}" if state.message else ""
                )
                failed.setdefault(row["asset_id"], []).append(_failure(row, missing_code, why))
        if self.batch.on_failed_records == "on_demand":
            # Whole assets go on demand once; their batch results are not written.
            retry = set(failed)
            self.retry_on_demand |= retry
            out[:] = [r for r in out if r["asset_id"] not in retry]
            failed = {}
        flush()
        dead = [r for rows_ in failed.values() for r in rows_]
        self.outcome.records_failed += len(dead)
        if dead:
            self.account(EMBEDDED.table(dead), "batch")
        assets = sorted({r["asset_id"] for r in wanted.values()} - self.retry_on_demand)
        self.plan.ledger.set_path(assets, "batch")  # taken: no longer to do in this run
        self.journal.update_batch_job(entry.name, "collected")
        self._release(entry.name)
        self.outcome.jobs_collected += 1
        counts = manifest or state.counts
        self.say(
            f"batch: collected {entry.name} ({state.status}; {json.dumps(counts, sort_keys=True)})"
        )

    def _embedded(self, row: dict[str, Any], model_output: Any) -> list[dict[str, Any]] | None:
        from pipelines.bedrock.errors import BedrockCallError
        from pipelines.bedrock.response import parse_embedding_response

        try:
            result = parse_embedding_response(
                model_output, expected_dimension=self.cfg.embedding.dimension
            )
        except BedrockCallError:
            return None
        base = {c: row.get(c) for c in SEGMENT_COLUMNS}
        return [
            {
                **base,
                "embedding_type": emb.embedding_type,
                "vector": emb.vector,
                # Usage is counted once per segment, on its first embedding (ledger, via=batch).
                "input_tokens": (result.input_tokens or 0) if i == 0 else None,
                "truncated_char_length": emb.truncated_char_length,
                "bedrock_calls": 0,
                "throttles": 0,
                "retries": 0,
            }
            for i, emb in enumerate(result.embeddings)
        ]

    # -- the on-demand share ----------------------------------------------------------------------

    def on_demand_todo(self, assets: set[str]) -> Path | None:
        """A todo file of these assets (from the plan's), for the on-demand pipeline."""
        if not assets:
            return None
        keep = pa.array(sorted(assets), pa.string())
        return self._filtered_todo(
            self.folder / "on_demand.parquet", lambda t: pc.is_in(t.column("asset_id"), keep)
        )

    def staging_todo(self, exclude: set[str]) -> Path | None:
        """The plan's todo without ``exclude`` (assets a running job holds) and without the
        assets an earlier job's output settled, for staging."""
        drop = pa.array(sorted(exclude), pa.string())

        def keep(table: pa.Table) -> pa.Array:
            ids = table.column("asset_id")
            todo = self.plan.ledger.still_todo(ids.to_pylist())
            still = pc.is_in(ids, value_set=pa.array(sorted(todo), pa.string()))
            return pc.and_(still, pc.invert(pc.is_in(ids, value_set=drop)))

        return self._filtered_todo(self.folder / "staging.parquet", keep)

    def _filtered_todo(self, path: Path, keep: Callable[[pa.Table], Any]) -> Path | None:
        """The plan's todo rows ``keep`` selects, streamed batch by batch into ``path``."""
        if not self.plan.todo_path.exists():
            return None
        rows = 0
        writer: pq.ParquetWriter | None = None
        with pq.ParquetFile(self.plan.todo_path) as file:
            for batch in file.iter_batches(batch_size=50_000):
                table = pa.Table.from_batches([batch])
                table = table.filter(keep(table)).cast(ASSET.schema)
                if not table.num_rows:
                    continue
                if writer is None:
                    writer = pq.ParquetWriter(path, ASSET.schema)
                writer.write_table(table)
                rows += table.num_rows
        if writer is not None:
            writer.close()
        return path if rows else None


class _Spool:
    """The driver's copy of the staged records: JSONL lines and the mapping, in arrival order.
    The decode stage's dead letters go straight to the ledger."""

    def __init__(self, folder: Path, account: Callable[[pa.Table, str | None], None]) -> None:
        self.lines_path = folder / "records.jsonl"
        self.map_path = folder / "records.parquet"
        self._lines = self.lines_path.open("w", encoding="utf-8")
        self._map = pq.ParquetWriter(self.map_path, _map_schema())
        self.account = account
        self.records = 0
        self.failed: set[str] = set()

    def __call__(self, batch: pa.Table) -> None:
        rows = batch.to_pylist()
        dead = [r for r in rows if r.get("error_code") is not None]
        good = [r for r in rows if r.get("error_code") is None]
        if dead:
            self.failed.update(r["asset_id"] for r in dead)
            self.account(EMBEDDED.table(dead), None)
        if good:
            for r in good:
                self._lines.write(r["record_json"] + "\n")
            self._map.write_table(pa.Table.from_pylist(good, schema=_map_schema()))
            self.records += len(good)

    def close(self) -> None:
        if not self._lines.closed:
            self._lines.close()
            self._map.close()

    def by_asset(self, skip: set[str]) -> Iterator[tuple[str, list[tuple[dict[str, Any], str]]]]:
        """``(asset id, [(mapping row, line)])`` in arrival order (an asset's segments arrive
        together: the decode stage emits them from one block)."""
        current: str | None = None
        records: list[tuple[dict[str, Any], str]] = []
        with (
            pq.ParquetFile(self.map_path) as mapping,
            self.lines_path.open(encoding="utf-8") as lines,
        ):
            for batch in mapping.iter_batches(batch_size=1024):
                for row in batch.to_pylist():
                    line = lines.readline().rstrip("\n")
                    if row["asset_id"] in skip:
                        continue
                    if row["asset_id"] != current and records:
                        assert current is not None
                        yield current, records
                        records = []
                    current = row["asset_id"]
                    records.append((row, line))
        if records and current is not None:
            yield current, records


def _map_schema() -> pa.Schema:
    from pipelines.stages.stage_records import BATCH_RECORD

    return pa.schema([BATCH_RECORD.schema.field(c) for c in _MAP_COLUMNS])


def _files(group: list[tuple[dict[str, Any], str]], batch: Any) -> Iterator[bytes]:
    """The job's input files: at most ``max_records_per_file`` records and
    ``max_bytes_per_file`` bytes each."""
    chunk: list[bytes] = []
    size = 0
    for _, line in group:
        data = (line + "\n").encode()
        if chunk and (
            len(chunk) >= batch.max_records_per_file or size + len(data) > batch.max_bytes_per_file
        ):
            yield b"".join(chunk)
            chunk, size = [], 0
        chunk.append(data)
        size += len(data)
    if chunk:
        yield b"".join(chunk)


def _failure(row: dict[str, Any], code: str, message: str) -> dict[str, Any]:
    error = RecordError("embed", code, message)
    where = ("segment_index", "segment_count", "page", "start_s", "end_s", "char_start")
    error.at(**{c: row.get(c) for c in (*where, "char_end", "input_kind")})
    return dead_letter_row(row, error)


def check_batch_access(client: BatchJobClient) -> None:
    """The batch preflight: the control plane answers (credentials, endpoint, region)."""
    from pipelines.bedrock.errors import BedrockCallError

    try:
        client.check_access()
    except BedrockCallError as exc:
        raise InfrastructureError(
            f"batch inference: ListModelInvocationJobs failed: {exc}"
        ) from exc


def run_batch(
    cfg: BackfillJobConfig,
    plan: BackfillPlan,
    store: VectorStore,
    journal: Journal,
    console: Any,
    worker_env: dict[str, str],
    figures: dict[str, Any],
) -> int:
    """The batch path of a backfill run (see the module docstring); returns how many jobs are
    still running when it returns (the run is then ``pending``). Fills ``figures`` for the
    report."""
    import dataclasses

    from pipelines.backfill import _Accounting, backfill_pipeline
    from pipelines.core import preflight
    from pipelines.core.rate_limit import guard_name
    from pipelines.core.runner import Pipeline, init_ray, run_pipeline
    from pipelines.stages.embed import guard_for

    accounting = _Accounting(plan, store, journal)
    driver = BatchDriver(cfg, plan, store, journal, accounting.account, console.say)
    try:
        open_jobs = journal.open_batch_jobs(plan.collection)
        if plan.todo_rows or open_jobs:
            check_batch_access(driver.client)
            preflight.check_staging(cfg)
        init_ray(cfg.ray, worker_env)
        # Batch jobs in progress count against the account's quota in the shared guard.
        guard = guard_for(cfg.bedrock, guard_name(cfg.bedrock, cfg.embedding.model_id))
        guard.attach()
        driver.attach_guard(guard)
        driver.adopt_open_jobs()
        # Ended jobs of earlier runs first: their assets need no new job.
        driver.wait_and_collect(0.0)
        staging = driver.staging_todo(driver.busy_assets()) if plan.todo_rows else None
        if staging is not None:
            spool = driver.spool()
            source_plan = dataclasses.replace(plan, todo_path=staging)
            stages = [_decode_stage(cfg), _records_stage(cfg)]
            pipeline = Pipeline("backfill-batch", source_plan.source(), stages)
            console.say(f"pipeline: {pipeline.describe()}")
            try:
                run_pipeline(pipeline, cfg.ray, spool, batch_size=None, worker_env=worker_env)
            finally:
                spool.close()
            driver.submit(spool)
        driver.wait_and_collect(cfg.bedrock.batch.wait_s)
        on_demand = set(driver.outcome.on_demand_assets) | driver.retry_on_demand
        todo = driver.on_demand_todo(on_demand)
        if todo is not None:
            console.say(
                f"batch: {len(on_demand)} assets on demand (too few records for a job, or "
                "failed records retried)"
            )
            figures["preflight_calls"] = preflight.check_bedrock(cfg)
            demand_plan = dataclasses.replace(plan, todo_path=todo)
            pipeline = backfill_pipeline(cfg, demand_plan, store)
            by_stage = run_pipeline(
                pipeline, cfg.ray, accounting, batch_size=None, worker_env=worker_env
            )
            figures.update({k: v for stage in by_stage.values() for k, v in stage.items()})
    finally:
        accounting.flush(force=True)
        figures["batch"] = driver.outcome.figures()
    pending = driver.outcome.jobs_pending
    if pending:
        console.say(
            f"batch: {len(pending)} jobs still running ({', '.join(pending[:3])}"
            f"{', ...' if len(pending) > 3 else ''}); run the same command later to collect them"
        )
    return len(pending)


def _decode_stage(cfg: BackfillJobConfig) -> Any:
    """The backfill's decode stage, as :func:`pipelines.backfill.backfill_pipeline` builds it."""
    from pipelines.core.io import InputPolicy
    from pipelines.core.stage import Resources
    from pipelines.stages.decode import AssetLimits, DecodeStage

    res = cfg.resources
    return DecodeStage(
        cfg.segmentation,
        cfg.embedding,
        cfg.bedrock.s3_endpoint_url,
        accepts=cfg.usecase.modalities,
        limits=AssetLimits.of(cfg.limits),
        decode=cfg.decode,
        inputs=InputPolicy.for_job(cfg),
        resources=Resources.of(res.decode, batch_size=1, rows_per_block=res.embed.max_in_flight),
    )


def _records_stage(cfg: BackfillJobConfig) -> Any:
    from pipelines.core.stage import Resources
    from pipelines.stages.stage_records import BatchRecordStage

    # Light CPU work in tasks beside the decode tasks (0.25 CPU, like the embed actors).
    return BatchRecordStage(cfg.embedding, resources=Resources(num_cpus=0.25, batch_size=None))
