"""``segmentation=service``: let Bedrock's async SEGMENTED_EMBEDDING cut and embed one asset.

For one asset row this stage stages the input on S3 (unless it is already there), starts one
async job with the use case's embedding and segmentation parameters, waits for it, reads the
per-segment outputs and returns *embedded rows*: the segment-row columns of
:mod:`pipelines.core.rows` plus ``EMBEDDED_COLUMNS``. Failed segments and failed jobs become
dead-letter rows (stage ``embed``, codes from :mod:`pipelines.core.codes`; a failed segment's
service ``failureReason`` leads its message); bad credentials or an unusable staging bucket fail
loudly.

Accounting: ``bedrock_calls`` counts ``StartAsyncInvoke`` attempts (the billable work is one job;
``GetAsyncInvoke`` polls are control-plane calls and are not counted), ``throttles`` counts
throttled starts and polls, ``retries`` repeated starts. They are carried by the asset's first
output row only (zeros elsewhere) so that summing the column over rows counts each job once.
``input_tokens`` is None: async jobs report no token counts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.bedrock.async_jobs import (
    AsyncJobFailed,
    AsyncJobTimeout,
    NovaAsyncJobs,
    PollStats,
    SegmentedResults,
    read_segmented_results,
    request_token,
)
from pipelines.bedrock.client import make_bedrock_client
from pipelines.bedrock.enums import (
    normalise_format,
)
from pipelines.bedrock.errors import (
    BedrockCallError,
    BedrockRetryRule,
    is_throttle,
    raise_if_fatal,
    retry_policy,
)
from pipelines.bedrock.request import EmbeddingRequest
from pipelines.config.schema import (
    BedrockConfig,
    EmbeddingConfig,
    PricesConfig,
    SegmentationConfig,
)
from pipelines.core import codes
from pipelines.core.errors import InfrastructureError, RecordError, SpendingLimitReached
from pipelines.core.io import InputPolicy, InputRefused, local_file_path, s3_client, split_s3_uri
from pipelines.core.retry import Failure, retry_call
from pipelines.core.rows import (
    ASSET,
    EMBEDDED,
    EMBEDDED_COLUMNS,
    dead_letter_row,
    require_columns,
    segment_row,
)
from pipelines.core.stage import Resources, Stage
from pipelines.modalities import Modality, Registry, current
from pipelines.stages._decode_common import source_error

log = logging.getLogger(__name__)

STAGE = "embed"
NEEDED_COLUMNS = ("asset_id", "uri", "modality", "text", "content_version")


@dataclass
class _Counters:
    calls: int = 0
    throttles: int = 0
    retries: int = 0


def _extension(uri: str | None) -> str:
    if not uri:
        return ""
    path = uri.split("?", 1)[0]
    return os.path.splitext(path)[1].lstrip(".").lower()


def _hash_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ServiceSegmentEmbedder:
    """Embeds whole assets with async service segmentation; a Ray Data ``flat_map`` callable.

    Holds only plain config dataclasses until first use, so it pickles to workers; the boto3
    clients are created lazily in the worker. ``sleep`` is injectable for tests.
    """

    def __init__(
        self,
        embedding: EmbeddingConfig,
        segmentation: SegmentationConfig,
        bedrock: BedrockConfig,
        *,
        run_id: str = "",
        bedrock_client: Any | None = None,
        s3: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
        modalities: Registry | None = None,
        guard: Any | None = None,
        account: str | None = None,
        prices: PricesConfig | None = None,
        run_deadline: float | None = None,
        inputs: InputPolicy | None = None,
    ) -> None:
        # The configuration was checked before any work (pipelines/config/validate.py).
        self.modalities = modalities or current()
        # The shared quota guard (GuardHandle; None: unpaced, tests) and the run's account in it.
        self.guard = guard
        self.account = account
        self.prices = prices or PricesConfig()
        # Where the job may read (pipelines.core.io.InputPolicy); None: anywhere.
        self.inputs = inputs
        self.embedding = embedding
        self.segmentation = segmentation
        self.bedrock = bedrock
        self.run_id = run_id
        self._bedrock_client = bedrock_client
        self._s3 = s3
        self._sleep = sleep
        self._rng = random.Random()
        # Until when a throttled start (too many async jobs at once: ServiceQuotaExceeded)
        # waits; None: throttles count against bedrock.max_attempts.
        self.run_deadline = run_deadline

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_bedrock_client"] = None
        state["_s3"] = None
        return state

    @property
    def jobs(self) -> NovaAsyncJobs:
        if self._bedrock_client is None:
            self._bedrock_client = make_bedrock_client(self.bedrock)
        return NovaAsyncJobs(self._bedrock_client, self.embedding.model_id, sleep=self._sleep)

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = s3_client(self.bedrock.s3_endpoint_url, self.bedrock.region)
        return self._s3

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        return self.embed_asset(row)

    # -- one asset -------------------------------------------------------------------------------

    def embed_asset(self, asset: Mapping[str, Any]) -> list[dict[str, Any]]:
        r"""All embedded rows (and dead-letter rows) of one asset row.

        The one place where this stage's :class:`RecordError`\ s become dead-letter rows: those
        raised (the asset failed) and those returned for single segments (the others went on).
        """
        require_columns(asset, NEEDED_COLUMNS, "embed_service")
        counters = _Counters()
        try:
            items = self._embed(asset, counters)
        except RecordError as error:
            items = [error]
        out = [
            _embedded(dead_letter_row(asset, item)) if isinstance(item, RecordError) else item
            for item in items
        ]
        _put_counters(out[0], counters)
        return out

    def _embed(
        self, asset: Mapping[str, Any], counters: _Counters
    ) -> list[dict[str, Any] | RecordError]:
        modality = self.modalities.get(str(asset.get("modality"))) or self.modalities.for_path(
            asset.get("uri")
        )
        uri = self._locate(asset)
        if modality is not None:
            modality = modality.service_modality(local_file_path(uri) if uri else None)
        if modality is None or not modality.service_segmentation:
            raise RecordError(
                STAGE,
                codes.UNSUPPORTED_MODALITY,
                f"modality {asset.get('modality')!r} cannot use service segmentation "
                "(use segmentation=local for it)",
            )
        kind = modality.name
        try:
            source_uri, fmt, staged = self._stage_input(asset, modality, uri)
        except RecordError as error:
            error.at(input_kind=kind)
            raise
        try:
            return self._run_job(asset, modality, source_uri, fmt, counters)
        finally:
            if staged:
                # The copy served its job: it does not stay in the staging bucket.
                self._unstage(source_uri)

    def _run_job(
        self,
        asset: Mapping[str, Any],
        modality: Modality,
        source_uri: str,
        fmt: str,
        counters: _Counters,
    ) -> list[dict[str, Any] | RecordError]:
        """Start the asset's async job on its staged input, wait, and read its segments."""
        kind = modality.name
        where = {"input_kind": kind, "input_format": fmt}
        try:
            request = modality.service_request(fmt, source_uri, self.embedding, self.segmentation)
        except RecordError as error:
            error.at(input_kind=kind)
            raise
        model_input = request.to_model_input()
        token = request_token(
            self.embedding.model_id,
            json.dumps(model_input, sort_keys=True),
            str(asset.get("asset_id")),
            str(asset.get("content_version")),
            self.run_id,
        )
        output_uri = f"{self._prefix()}/outputs/{token[:24]}"
        jobs = self.jobs
        try:
            self._acquire_slot(token)
            try:
                arn = self._start(jobs, request, output_uri, token, counters)
                if self.guard is not None:
                    # In flight: the driver journals it (a killed run's jobs are on record).
                    self.guard.tell(
                        "job_started",
                        token,
                        {
                            "arn": arn,
                            "asset_id": asset.get("asset_id"),
                            "content_version": asset.get("content_version"),
                            "run": self.account,
                        },
                    )
                stats = PollStats()
                try:
                    status = jobs.wait(
                        arn,
                        self.bedrock.async_poll_min_s,
                        self.bedrock.async_poll_max_s,
                        self.bedrock.async_timeout_s,
                        stats=stats,
                    )
                finally:
                    counters.throttles += stats.throttles
            finally:
                if self.guard is not None:
                    self.guard.tell("release_job", token)
        except AsyncJobFailed as exc:
            raise RecordError(
                STAGE, codes.ASYNC_JOB_FAILED, f"{exc.arn}: {exc.failure_message}", **where
            ) from exc
        except AsyncJobTimeout as exc:
            raise RecordError(STAGE, codes.ASYNC_JOB_TIMEOUT, str(exc), **where) from exc
        except BedrockCallError as exc:
            raise_if_fatal(exc)
            raise exc.record_error(STAGE).at(**where) from exc
        try:
            results = read_segmented_results(status.output_s3_uri or output_uri, self.s3)
        except BedrockCallError as exc:
            raise_if_fatal(exc)
            raise RecordError(STAGE, codes.ASYNC_OUTPUT_UNREADABLE, str(exc), **where) from exc
        rows = self._rows(asset, modality, fmt, source_uri, results)
        if self.guard is not None and self.account is not None:
            # The job's cost is known once its segments are: charged to the run now (a run
            # limit in dollars refuses the next start once it is reached).
            usage = [modality.usage(r) for r in rows if not isinstance(r, RecordError)]
            usd = sum(modality.cost(u, self.prices) for u in usage)
            if usd:
                self.guard.tell("charge", self.account, usd)
        return rows

    # -- the shared quota guard ------------------------------------------------------------------

    def _acquire_slot(self, token: str) -> None:
        """Wait for a slot among ``bedrock.quota.async_max_concurrent_jobs`` jobs in progress
        (shared by every job on the cluster)."""
        if self.guard is None:
            return
        lease = self.bedrock.async_timeout_s + 60.0
        wait = self.bedrock.async_poll_min_s
        deadline = time.monotonic() + self.bedrock.async_timeout_s
        while not self.guard.ask("acquire_job", token, lease):
            if time.monotonic() > deadline:
                raise AsyncJobTimeout(
                    "(not started: no slot under bedrock.quota.async_max_concurrent_jobs)",
                    self.bedrock.async_timeout_s,
                    "waiting",
                )
            self._sleep(wait * (0.5 + self._rng.random()))
            wait = min(wait * 2, self.bedrock.async_poll_max_s)

    def _pace_start(self) -> None:
        if self.guard is None:
            return
        from pipelines.core.rate_limit import STOP

        delay = self.guard.ask("reserve_start", self.account)
        if delay == STOP:
            reason = self.guard.ask("stop_reason", self.account) or "a spending limit was reached"
            raise SpendingLimitReached(reason)
        if delay > 0:
            self._sleep(delay)

    # -- steps ---------------------------------------------------------------------------------

    def _prefix(self) -> str:
        assert self.bedrock.s3_staging_uri is not None
        return self.bedrock.s3_staging_uri.rstrip("/")

    def _locate(self, asset: Mapping[str, Any]) -> str | None:
        """The asset's ``uri`` as the job's input policy allows it to be read (a relative path
        joined to the manifest's folder), or a :class:`RecordError` before anything is read."""
        uri = asset.get("uri")
        if not uri or self.inputs is None:
            return str(uri) if uri else None
        try:
            return self.inputs.check(str(uri))
        except InputRefused as exc:
            raise RecordError(STAGE, codes.INPUT_OUTSIDE_ROOTS, str(exc)) from exc
        except ValueError as exc:
            raise RecordError(STAGE, codes.BAD_URI, str(exc)) from exc

    def _stage_input(
        self, asset: Mapping[str, Any], modality: Modality, uri: str | None
    ) -> tuple[str, str, bool]:
        """The input's S3 URI, its wire format, and whether this call staged a copy (local files
        and inline text are uploaded under the staging prefix; ``s3://`` inputs are used where
        they are). ``uri`` is the asset's, as :meth:`_locate` allowed it."""
        text = asset.get("text")
        asset_key = hashlib.sha256(str(asset.get("asset_id")).encode()).hexdigest()[:16]
        if text:
            data = str(text).encode("utf-8")
            key = f"inputs/{asset_key}/{hashlib.sha256(data).hexdigest()}.txt"
            return self._put(data, key), "txt", True
        if not uri:
            raise RecordError(STAGE, codes.MISSING_URI, "the row has neither uri nor text")
        ext = normalise_format(_extension(uri)) or ""
        if not modality.accepts_service_format(ext):
            raise RecordError(
                STAGE,
                codes.UNSUPPORTED_FORMAT,
                f"{modality.name} format {ext or '(none)'!r} is not accepted by the service; "
                f"use one of {sorted(modality.service_formats)} or segmentation=local",
            )
        if str(uri).startswith("s3://"):
            return str(uri), ext, False
        path = local_file_path(str(uri))
        if path is None:
            raise RecordError(STAGE, codes.BAD_URI, f"unsupported URI scheme: {uri!r}")
        try:
            digest = _hash_file(path)
        except OSError as exc:
            mapped = source_error(exc, STAGE)
            if mapped is None:
                raise
            raise mapped from exc
        key = f"inputs/{asset_key}/{digest}.{ext or 'bin'}"
        return self._upload(path, key), ext, True

    def _unstage(self, staged_uri: str) -> None:
        """Delete a staged copy; a failure is logged, not the asset's (its job is done)."""
        bucket, key = split_s3_uri(staged_uri)
        try:
            self.s3.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            log.warning("cannot delete the staged copy %s: %s", staged_uri, exc)

    def _put(self, data: bytes, key: str) -> str:
        bucket, prefix = split_s3_uri(self._prefix() + "/")
        full = f"{prefix}{key}"
        try:
            self.s3.put_object(Bucket=bucket, Key=full, Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise InfrastructureError(f"cannot stage input to s3://{bucket}/{full}: {exc}") from exc
        return f"s3://{bucket}/{full}"

    def _upload(self, path: str, key: str) -> str:
        bucket, prefix = split_s3_uri(self._prefix() + "/")
        full = f"{prefix}{key}"
        try:
            self.s3.upload_file(path, bucket, full)
        except (ClientError, BotoCoreError) as exc:
            raise InfrastructureError(
                f"cannot stage {path} to s3://{bucket}/{full}: {exc}"
            ) from exc
        return f"s3://{bucket}/{full}"

    def _start(
        self,
        jobs: NovaAsyncJobs,
        request: EmbeddingRequest,
        output_uri: str,
        token: str,
        counters: _Counters,
    ) -> str:
        """Start the job, retrying THROTTLED / TRANSIENT failures (the same token makes a retried
        start idempotent); a throttled start (the concurrent-job quota) waits until the run's
        deadline."""

        def before_attempt(attempt: int) -> None:
            self._pace_start()
            counters.calls += 1
            counters.retries = attempt - 1

        def on_failure(failure: Failure) -> None:
            if is_throttle(failure.error):
                counters.throttles += 1
                if self.guard is not None:
                    self.guard.tell("report_start", 0, 1, self.account)

        arn: str = retry_call(
            lambda: jobs.start_segmented(request, output_uri, client_request_token=token),
            BedrockRetryRule(
                self.bedrock.max_attempts - 1, wait_throttled=self.run_deadline is not None
            ),
            retry_policy(self.bedrock, self.run_deadline),
            before_attempt=before_attempt,
            on_failure=on_failure,
            sleep=self._sleep,
            rng=self._rng,
        )
        if self.guard is not None:
            self.guard.tell("report_start", 1, 0, self.account)
        return arn

    # -- rows ------------------------------------------------------------------------------------

    def _rows(
        self,
        asset: Mapping[str, Any],
        modality: Modality,
        fmt: str,
        source_uri: str,
        results: SegmentedResults,
    ) -> list[dict[str, Any] | RecordError]:
        """The job's segments as embedded rows, and the errors of those that failed."""
        dim = self.embedding.dimension
        indices = sorted({s.segment_index for s in results.segments})
        count = len(indices)
        out: list[dict[str, Any] | RecordError] = []
        common: dict[str, Any] = {"input_kind": modality.name, "input_format": fmt}
        for seg in sorted(results.segments, key=lambda s: (s.segment_index, s.embedding_type)):
            position = modality.service_fields(seg, self.embedding)
            fields = {"segment_index": seg.segment_index, "segment_count": count, **position}
            if not seg.ok:
                reason = f"{seg.failure_reason}: " if seg.failure_reason else ""
                out.append(
                    RecordError(
                        STAGE,
                        codes.SEGMENT_FAILED,
                        f"{reason}{seg.embedding_type} segment {seg.segment_index}: "
                        f"{seg.message or seg.status}",
                        **common,
                        **fields,
                    )
                )
                continue
            if len(seg.vector) != dim:
                out.append(
                    RecordError(
                        STAGE,
                        codes.DIMENSION_MISMATCH,
                        f"{seg.embedding_type} segment {seg.segment_index} has "
                        f"{len(seg.vector)} dimensions, requested {dim}",
                        **common,
                        **fields,
                    )
                )
                continue
            row = segment_row(asset, input_s3_uri=source_uri, **common, **fields)
            out.append(
                _embedded(
                    row,
                    embedding_type=seg.embedding_type,
                    vector=seg.vector,
                    truncated_char_length=seg.truncated_char_length,
                )
            )
        # An embedding type that failed as a whole may have written no segment lines.
        seen_types = {s.embedding_type for s in results.segments}
        for entry in results.results:
            if entry.status == "FAILURE" and entry.embedding_type not in seen_types:
                reason = f"{entry.failure_reason}: " if entry.failure_reason else ""
                out.append(
                    RecordError(
                        STAGE,
                        codes.ASYNC_JOB_FAILED,
                        f"{reason}{entry.embedding_type}: {entry.message or 'failed'}",
                        segment_count=count,
                        **common,
                    )
                )
        if not out:
            raise RecordError(
                STAGE, codes.NO_SEGMENTS, "the job completed without segments", **common
            )
        return out


def _embedded(row: dict[str, Any], **values: Any) -> dict[str, Any]:
    for c in EMBEDDED_COLUMNS:
        row.setdefault(c, None)
    row.update(values)
    row["bedrock_calls"] = row["bedrock_calls"] or 0
    row["throttles"] = row["throttles"] or 0
    row["retries"] = row["retries"] or 0
    return row


def _put_counters(row: dict[str, Any], counters: _Counters) -> None:
    row["bedrock_calls"] = counters.calls
    row["throttles"] = counters.throttles
    row["retries"] = counters.retries


class ServiceEmbedStage(Stage):
    """Asset rows in, embedded rows out, through Bedrock's async segmentation (I/O actors)."""

    name = "embed_service"
    takes = ASSET
    gives = EMBEDDED

    def __init__(
        self,
        embedding: EmbeddingConfig,
        segmentation: SegmentationConfig,
        bedrock: BedrockConfig,
        *,
        run_id: str = "",
        resources: Resources | None = None,
        modalities: Registry | None = None,
        budget_name: str | None = None,
        account: str | None = None,
        max_calls: int | None = None,
        max_usd: float | None = None,
        prices: PricesConfig | None = None,
        run_deadline: float | None = None,
        inputs: InputPolicy | None = None,
    ) -> None:
        from pipelines.stages.embed import guard_for

        # ``budget_name``: the shared quota guard (one per account, region and model) that paces
        # the async starts and holds the job slots; ``account``: this run's spending account.
        self.guard = guard_for(bedrock, budget_name) if budget_name is not None else None
        self.account = account
        self.max_calls, self.max_usd = max_calls, max_usd
        self.embedder = ServiceSegmentEmbedder(
            embedding,
            segmentation,
            bedrock,
            run_id=run_id,
            modalities=modalities,
            guard=self.guard,
            account=account,
            prices=prices,
            run_deadline=run_deadline,
            inputs=inputs,
        )
        # One asset per call; each actor waits on several async jobs at once.
        self.resources = resources or Resources(
            num_cpus=0.25, concurrency=2, actor=True, calls_per_actor=8, batch_size=1
        )

    def on_start(self) -> None:
        if self.guard is not None:
            self.guard.attach()
            if self.account is not None:
                self.guard.ask("open_run", self.account, self.max_calls, self.max_usd)

    def live(self) -> dict[str, Any]:
        """The async jobs of this run in flight (the driver journals them every second)."""
        import ray

        # Not before the run has started Ray (see EmbedStage.live).
        if self.guard is None or self.account is None or not ray.is_initialized():
            return {}
        try:
            return {"async_jobs": self.guard.ask("started_jobs", self.account)}
        except Exception:  # figures for the journal and console; the run goes on
            return {}

    def on_finish(self) -> dict[str, Any]:
        if self.guard is None:
            return {}
        try:
            snap = self.guard.ask("snapshot")
            spent = self.guard.ask("close_run", self.account) if self.account else None
        except Exception:  # the figures are for the report; the run's work is done
            return {"rate_budget": None}
        return {"rate_budget": {**snap, "guard": self.guard.name, "run_account": spent}}

    def process(self, batch: pa.Table) -> pa.Table:
        out: list[dict[str, Any]] = []
        for asset in batch.to_pylist():
            out.extend(self.embedder.embed_asset(asset))
        return EMBEDDED.table(out)


def embed_asset_with_service(
    asset: Mapping[str, Any],
    embedding: EmbeddingConfig,
    segmentation: SegmentationConfig,
    bedrock: BedrockConfig,
    *,
    bedrock_client: Any | None = None,
    s3: Any | None = None,
    run_id: str = "",
) -> list[dict[str, Any]]:
    """One asset through service segmentation (see :class:`ServiceSegmentEmbedder`)."""
    embedder = ServiceSegmentEmbedder(
        embedding, segmentation, bedrock, run_id=run_id, bedrock_client=bedrock_client, s3=s3
    )
    return embedder.embed_asset(asset)
