"""``segmentation=service``: let Bedrock's async SEGMENTED_EMBEDDING cut and embed one asset.

For one asset row this stage stages the input on S3 (unless it is already there), starts one
async job with the use case's embedding and segmentation parameters, waits for it, reads the
per-segment outputs and returns *embedded rows*: the segment-row columns of
:mod:`pipelines.core.rows` plus ``EMBEDDED_COLUMNS``. Failed segments and failed jobs become
dead-letter rows (stage ``embed``); bad credentials or an unusable staging bucket fail loudly.

Accounting: ``bedrock_calls`` counts ``StartAsyncInvoke`` attempts (the billable work is one job;
``GetAsyncInvoke`` polls are control-plane calls and are not counted), ``throttles`` counts
throttled starts and polls, ``retries`` repeated starts. They are carried by the asset's first
output row only (zeros elsewhere) so that summing the column over rows counts each job once.
``input_tokens`` is None: async jobs report no token counts.
"""

from __future__ import annotations

import hashlib
import json
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
from pipelines.bedrock.client import Backoff, make_bedrock_client
from pipelines.bedrock.enums import (
    AudioFormat,
    ImageFormat,
    TaskType,
    VideoFormat,
    normalise_format,
)
from pipelines.bedrock.errors import (
    CODE_DIMENSION_MISMATCH,
    BedrockCallError,
    ErrorClass,
    RequestValidationError,
)
from pipelines.bedrock.inputs import AudioInput, ImageInput, Source, TextInput, VideoInput
from pipelines.bedrock.limits import RequestLimits
from pipelines.bedrock.request import EmbeddingRequest
from pipelines.config.schema import BedrockConfig, EmbeddingConfig, SegmentationConfig
from pipelines.core.errors import ConfigError, InfrastructureError
from pipelines.core.io import local_file_path, s3_client, split_s3_uri
from pipelines.core.rows import (
    ASSET,
    EMBEDDED,
    EMBEDDED_COLUMNS,
    dead_letter_row,
    require_columns,
    segment_row,
)
from pipelines.core.stage import Resources, Stage

STAGE = "embed"
NEEDED_COLUMNS = ("asset_id", "uri", "modality", "text", "content_version")

# Dead-letter codes of this stage (service failure reasons pass through as they are).
CODE_UNSUPPORTED_MODALITY = "UNSUPPORTED_MODALITY"
CODE_UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
CODE_NO_INPUT = "NO_INPUT"
CODE_UNREADABLE_ASSET = "UNREADABLE_ASSET"
CODE_JOB_FAILED = "ASYNC_JOB_FAILED"
CODE_JOB_TIMEOUT = "ASYNC_JOB_TIMEOUT"
CODE_OUTPUT_UNREADABLE = "ASYNC_OUTPUT_UNREADABLE"
CODE_SEGMENT_FAILED = "SEGMENT_FAILED"
CODE_NO_SEGMENTS = "NO_SEGMENTS"

_TEXT_EXTENSIONS = {"txt", "text", "md", "markdown", "csv", "json", "html", "htm", "xml", "rst"}
_KIND_FORMATS: dict[str, set[str]] = {
    "image": {f.value for f in ImageFormat},
    "audio": {f.value for f in AudioFormat},
    "video": {f.value for f in VideoFormat},
}


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


def _infer_modality(uri: str | None, text: str | None) -> str | None:
    if text:
        return "text"
    ext = normalise_format(_extension(uri)) or ""
    if ext in _TEXT_EXTENSIONS:
        return "text"
    if ext == "pdf":
        return "document"
    for kind, formats in _KIND_FORMATS.items():
        if ext in formats:
            return kind
    return None


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
    ) -> None:
        if not bedrock.s3_staging_uri:
            raise ConfigError(
                "bedrock.s3_staging_uri",
                "segmentation=service needs an s3://bucket/prefix for inputs and job outputs",
            )
        try:
            split_s3_uri(bedrock.s3_staging_uri)
        except ValueError as exc:
            raise ConfigError("bedrock.s3_staging_uri", str(exc)) from exc
        if not 1 <= segmentation.service_duration_s <= 30:
            raise ConfigError("segmentation.service_duration_s", "must be in 1..30")
        if not 800 <= segmentation.service_max_chars <= 50_000:
            raise ConfigError("segmentation.service_max_chars", "must be in 800..50000")
        self.embedding = embedding
        self.segmentation = segmentation
        self.bedrock = bedrock
        self.run_id = run_id
        self._bedrock_client = bedrock_client
        self._s3 = s3
        self._sleep = sleep
        self._rng = random.Random()

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
        """All embedded rows (and dead-letter rows) of one asset row."""
        require_columns(asset, NEEDED_COLUMNS, "embed_service")
        counters = _Counters()
        modality = asset.get("modality") or _infer_modality(asset.get("uri"), asset.get("text"))
        if modality == "document" or modality not in ("text", "image", "audio", "video"):
            return self._dead(
                asset,
                CODE_UNSUPPORTED_MODALITY,
                f"modality {modality!r} cannot use service segmentation "
                "(documents and unknown types need segmentation=local)",
                counters,
            )
        kind = str(modality)
        try:
            source_uri, fmt = self._stage_input(asset, kind)
        except _AssetProblem as problem:
            return self._dead(asset, problem.code, problem.message, counters, input_kind=kind)
        try:
            request = self._request(kind, fmt, source_uri)
        except RequestValidationError as exc:
            return self._dead(asset, exc.code, str(exc), counters, input_kind=kind)
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
            arn = self._start(jobs, request, output_uri, token, counters)
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
        except AsyncJobFailed as exc:
            return self._dead(
                asset, CODE_JOB_FAILED, f"{exc.arn}: {exc.failure_message}", counters, kind, fmt
            )
        except AsyncJobTimeout as exc:
            return self._dead(asset, CODE_JOB_TIMEOUT, str(exc), counters, kind, fmt)
        except BedrockCallError as exc:
            self._raise_if_fatal(exc)
            return self._dead(asset, exc.code, exc.message, counters, kind, fmt)
        try:
            results = read_segmented_results(status.output_s3_uri or output_uri, self.s3)
        except BedrockCallError as exc:
            self._raise_if_fatal(exc)
            return self._dead(asset, CODE_OUTPUT_UNREADABLE, str(exc), counters, kind, fmt)
        return self._rows(asset, kind, fmt, source_uri, results, counters)

    # -- steps ---------------------------------------------------------------------------------

    def _prefix(self) -> str:
        assert self.bedrock.s3_staging_uri is not None
        return self.bedrock.s3_staging_uri.rstrip("/")

    def _stage_input(self, asset: Mapping[str, Any], kind: str) -> tuple[str, str]:
        """The input's S3 URI (uploading local files and inline text) and its wire format."""
        uri = asset.get("uri")
        text = asset.get("text")
        asset_key = hashlib.sha256(str(asset.get("asset_id")).encode()).hexdigest()[:16]
        if kind == "text" and text:
            data = str(text).encode("utf-8")
            key = f"inputs/{asset_key}/{hashlib.sha256(data).hexdigest()}.txt"
            return self._put(data, key), "txt"
        if not uri:
            raise _AssetProblem(CODE_NO_INPUT, "the row has neither uri nor text")
        ext = normalise_format(_extension(uri)) or ""
        if kind != "text" and ext not in _KIND_FORMATS[kind]:
            raise _AssetProblem(
                CODE_UNSUPPORTED_FORMAT,
                f"{kind} format {ext or '(none)'!r} is not accepted by the service; "
                f"use one of {sorted(_KIND_FORMATS[kind])} or segmentation=local",
            )
        if str(uri).startswith("s3://"):
            return str(uri), ext
        path = local_file_path(str(uri))
        if path is None:
            raise _AssetProblem(CODE_UNREADABLE_ASSET, f"unsupported URI scheme: {uri!r}")
        try:
            digest = _hash_file(path)
        except OSError as exc:
            raise _AssetProblem(CODE_UNREADABLE_ASSET, f"{uri}: {exc}") from exc
        key = f"inputs/{asset_key}/{digest}.{ext or 'bin'}"
        return self._upload(path, key), ext

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

    def _request(self, kind: str, fmt: str, source_uri: str) -> EmbeddingRequest:
        emb, seg = self.embedding, self.segmentation
        source = Source.s3(source_uri)
        common: dict[str, Any] = {
            "purpose": emb.index_purpose,
            "dimension": emb.dimension,
            "task_type": TaskType.SEGMENTED_EMBEDDING,
            "limits": RequestLimits(),
        }
        if kind == "text":
            req = EmbeddingRequest(
                text=TextInput(
                    source=source,
                    truncation_mode=emb.text_truncation_mode,
                    max_length_chars=seg.service_max_chars,
                ),
                **common,
            )
        elif kind == "image":
            req = EmbeddingRequest(
                image=ImageInput(format=fmt, source=source, detail_level=emb.image_detail_level),
                **common,
            )
        elif kind == "audio":
            req = EmbeddingRequest(
                audio=AudioInput(
                    format=fmt, source=source, duration_seconds=seg.service_duration_s
                ),
                **common,
            )
        else:
            req = EmbeddingRequest(
                video=VideoInput(
                    format=fmt,
                    source=source,
                    embedding_mode=emb.video_embedding_mode,
                    duration_seconds=seg.service_duration_s,
                ),
                **common,
            )
        req.validate()
        return req

    def _start(
        self,
        jobs: NovaAsyncJobs,
        request: EmbeddingRequest,
        output_uri: str,
        token: str,
        counters: _Counters,
    ) -> str:
        backoff = Backoff(self.bedrock.base_backoff_s, self.bedrock.max_backoff_s)
        while True:
            counters.calls += 1
            try:
                return jobs.start_segmented(request, output_uri, client_request_token=token)
            except BedrockCallError as exc:
                self._raise_if_fatal(exc)
                if exc.error_class == ErrorClass.THROTTLED:
                    counters.throttles += 1
                if not exc.retryable or counters.calls >= self.bedrock.max_attempts:
                    raise
                counters.retries += 1
                # The same token makes a retried start idempotent.
                self._sleep(backoff.delay(counters.calls - 1, self._rng))

    @staticmethod
    def _raise_if_fatal(exc: BedrockCallError) -> None:
        if exc.error_class == ErrorClass.FATAL:
            raise InfrastructureError(
                f"Bedrock refused the pipeline's calls ({exc.code}): {exc.message}. "
                "Check credentials, region and model access."
            ) from exc

    # -- rows ------------------------------------------------------------------------------------

    def _rows(
        self,
        asset: Mapping[str, Any],
        kind: str,
        fmt: str,
        source_uri: str,
        results: SegmentedResults,
        counters: _Counters,
    ) -> list[dict[str, Any]]:
        dim = self.embedding.dimension
        indices = sorted({s.segment_index for s in results.segments})
        count = len(indices)
        out: list[dict[str, Any]] = []
        common: dict[str, Any] = {"input_kind": kind, "input_format": fmt}
        if kind == "image":
            common["detail_level"] = self.embedding.image_detail_level
        for seg in sorted(results.segments, key=lambda s: (s.segment_index, s.embedding_type)):
            position: dict[str, Any] = {}
            if kind == "text":
                position = {"char_start": seg.start_char, "char_end": seg.end_char}
            elif kind in ("audio", "video"):
                position = {"start_s": seg.start_s, "end_s": seg.end_s}
            fields = {"segment_index": seg.segment_index, "segment_count": count, **position}
            if not seg.ok:
                row = dead_letter_row(
                    asset,
                    STAGE,
                    seg.failure_reason or CODE_SEGMENT_FAILED,
                    f"{seg.embedding_type} segment {seg.segment_index}: "
                    f"{seg.message or seg.status}",
                    **common,
                    **fields,
                )
                out.append(_embedded(row))
                continue
            if len(seg.vector) != dim:
                row = dead_letter_row(
                    asset,
                    STAGE,
                    CODE_DIMENSION_MISMATCH,
                    f"{seg.embedding_type} segment {seg.segment_index} has {len(seg.vector)} "
                    f"dimensions, requested {dim}",
                    **common,
                    **fields,
                )
                out.append(_embedded(row))
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
                row = dead_letter_row(
                    asset,
                    STAGE,
                    entry.failure_reason or CODE_JOB_FAILED,
                    f"{entry.embedding_type}: {entry.message or 'failed'}",
                    segment_count=count,
                    **common,
                )
                out.append(_embedded(row))
        if not out:
            return self._dead(
                asset, CODE_NO_SEGMENTS, "the job completed without segments", counters, kind, fmt
            )
        _put_counters(out[0], counters)
        return out

    def _dead(
        self,
        asset: Mapping[str, Any],
        code: str,
        message: str,
        counters: _Counters,
        input_kind: str | None = None,
        input_format: str | None = None,
    ) -> list[dict[str, Any]]:
        row = _embedded(
            dead_letter_row(
                asset, STAGE, code, message, input_kind=input_kind, input_format=input_format
            )
        )
        _put_counters(row, counters)
        return [row]


class _AssetProblem(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
    ) -> None:
        self.embedder = ServiceSegmentEmbedder(embedding, segmentation, bedrock, run_id=run_id)
        # One asset per call; each actor waits on several async jobs at once.
        self.resources = resources or Resources(
            num_cpus=0.25, concurrency=2, actor=True, calls_per_actor=8, batch_size=1
        )

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
