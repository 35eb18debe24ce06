"""Asynchronous SEGMENTED_EMBEDDING jobs: start, wait, list, and read their S3 outputs.

The service cuts long text, audio and video into segments itself and writes one JSONL line per
segment under ``<output s3Uri>/<invocation id>/`` (file names: ``RESULT_FILE``, ``OUTPUT_FILES``).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipelines.bedrock.errors import (
    CODE_MALFORMED_RESPONSE,
    BedrockCallError,
    ErrorClass,
    from_exception,
    is_throttle,
)
from pipelines.bedrock.request import EmbeddingRequest
from pipelines.config.schema import NOVA_MME_MODEL_ID
from pipelines.core.io import split_s3_uri
from pipelines.core.retry import Failure, RetryPolicy, retry_call

RESULT_FILE = "segmented-embedding-result.json"
# Output files by embedding type, used when the result file does not name them.
OUTPUT_FILES = {
    "TEXT": "embedding-text.jsonl",
    "AUDIO": "embedding-audio.jsonl",
    "VIDEO": "embedding-video.jsonl",
    "AUDIO_VIDEO_COMBINED": "embedding-audio-video.jsonl",
    "IMAGE": "embedding-image.json",
}

STATUS_IN_PROGRESS = "InProgress"
STATUS_COMPLETED = "Completed"
STATUS_FAILED = "Failed"


class AsyncJobFailed(Exception):
    """The job ended ``Failed``; ``failure_message`` is the service's reason."""

    def __init__(self, arn: str, failure_message: str | None) -> None:
        super().__init__(f"async job {arn} failed: {failure_message}")
        self.arn = arn
        self.failure_message = failure_message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.arn, self.failure_message))


class AsyncJobTimeout(TimeoutError):
    """The job did not finish within the caller's timeout (it may still be running)."""

    def __init__(self, arn: str, timeout_s: float, last_status: str | None) -> None:
        super().__init__(f"async job {arn} still {last_status} after {timeout_s:.1f}s")
        self.arn = arn
        self.timeout_s = timeout_s
        self.last_status = last_status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.arn, self.timeout_s, self.last_status))


@dataclass(frozen=True)
class AsyncJobStatus:
    """One ``GetAsyncInvoke`` / ``ListAsyncInvokes`` entry. ``output_s3_uri`` already includes
    the invocation id folder."""

    arn: str
    status: str
    output_s3_uri: str | None = None
    failure_message: str | None = None
    model_arn: str | None = None
    client_request_token: str | None = None
    submit_time: datetime | None = None
    last_modified_time: datetime | None = None
    end_time: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in (STATUS_COMPLETED, STATUS_FAILED)

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> AsyncJobStatus:
        out = d.get("outputDataConfig", {}) or {}
        s3 = out.get("s3OutputDataConfig", {}) or {}
        return cls(
            arn=str(d.get("invocationArn")),
            status=str(d.get("status")),
            output_s3_uri=s3.get("s3Uri"),
            failure_message=d.get("failureMessage"),
            model_arn=d.get("modelArn"),
            client_request_token=d.get("clientRequestToken"),
            submit_time=d.get("submitTime"),
            last_modified_time=d.get("lastModifiedTime"),
            end_time=d.get("endTime"),
        )


@dataclass
class PollStats:
    """What waiting cost: ``GetAsyncInvoke`` calls, throttled and transiently failed polls."""

    polls: int = 0
    throttles: int = 0
    errors: int = 0


def request_token(*parts: str) -> str:
    """A deterministic ``clientRequestToken`` (64 hex chars) from ``parts``: restarting a worker
    that already started the job gets the same job back instead of paying twice."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\x00")
    return h.hexdigest()


class NovaAsyncJobs:
    """``StartAsyncInvoke`` / ``GetAsyncInvoke`` / ``ListAsyncInvokes`` for Nova MME.

    ``sleep`` and ``clock`` are injectable so that unit tests need no real time.
    """

    def __init__(
        self,
        boto_client: Any,
        model_id: str = NOVA_MME_MODEL_ID,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = boto_client
        self.model_id = model_id
        self._sleep = sleep
        self._clock = clock

    def start_segmented(
        self,
        request: EmbeddingRequest,
        output_s3_uri: str,
        *,
        client_request_token: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Start a SEGMENTED_EMBEDDING job writing under ``output_s3_uri``; returns its ARN.

        ``client_request_token`` makes the start idempotent (same token, same job); default: a
        fresh random token.
        """
        model_input = request.to_model_input()
        split_s3_uri(output_s3_uri)  # fail before the call on a malformed output URI
        kwargs: dict[str, Any] = {
            "modelId": self.model_id,
            "modelInput": model_input,
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": output_s3_uri}},
            "clientRequestToken": client_request_token or uuid.uuid4().hex,
        }
        if tags:
            kwargs["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        try:
            response = self.client.start_async_invoke(**kwargs)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise from_exception(exc) from exc
        arn = response.get("invocationArn")
        if not arn:
            raise BedrockCallError(
                CODE_MALFORMED_RESPONSE, ErrorClass.TRANSIENT, "no invocationArn in response"
            )
        return str(arn)

    def get(self, arn: str) -> AsyncJobStatus:
        """One ``GetAsyncInvoke`` call."""
        try:
            return AsyncJobStatus.from_api(self.client.get_async_invoke(invocationArn=arn))
        except (ClientError, BotoCoreError, OSError) as exc:
            raise from_exception(exc) from exc

    def wait(
        self,
        arn: str,
        poll_min_s: float = 0.5,
        poll_max_s: float = 15.0,
        timeout_s: float = 3600.0,
        *,
        stats: PollStats | None = None,
    ) -> AsyncJobStatus:
        """Poll until the job ends; intervals grow x1.5 from ``poll_min_s`` to ``poll_max_s``.

        Returns the Completed status; raises :class:`AsyncJobFailed` (with the service's
        ``failureMessage``), :class:`AsyncJobTimeout`, or :class:`BedrockCallError` for a
        PERMANENT/FATAL polling error. A throttled or transient poll is retried (the retry
        helper, :func:`~pipelines.core.retry.retry_call`, with backoff from ``poll_min_s`` up
        to ``poll_max_s``) until the timeout.
        """
        stats = stats if stats is not None else PollStats()
        deadline = self._clock() + timeout_s
        interval = poll_min_s
        last: str | None = None

        def before_poll(_attempt: int) -> None:
            stats.polls += 1

        def on_failure(failure: Failure) -> None:
            if is_throttle(failure.error):
                stats.throttles += 1
            elif failure.retryable:
                stats.errors += 1

        while True:
            remaining = deadline - self._clock()
            try:
                status = retry_call(
                    lambda: self.get(arn),
                    lambda exc: isinstance(exc, BedrockCallError) and exc.retryable,
                    RetryPolicy(
                        None, deadline_s=max(remaining, 0.0), base_s=poll_min_s, cap_s=poll_max_s
                    ),
                    before_attempt=before_poll,
                    on_failure=on_failure,
                    clock=self._clock,
                    sleep=self._sleep,
                )
            except BedrockCallError as err:
                if err.retryable:
                    raise AsyncJobTimeout(arn, timeout_s, last) from err
                raise
            last = status.status
            if status.status == STATUS_COMPLETED:
                return status
            if status.status == STATUS_FAILED:
                raise AsyncJobFailed(arn, status.failure_message)
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise AsyncJobTimeout(arn, timeout_s, last)
            self._sleep(min(interval, remaining))
            interval = min(poll_max_s, interval * 1.5)

    def list_jobs(
        self,
        status: str | None = None,
        *,
        submit_time_after: datetime | None = None,
        submit_time_before: datetime | None = None,
        sort_order: str = "Descending",
        page_size: int = 100,
        max_items: int | None = None,
    ) -> Iterator[AsyncJobStatus]:
        """Every job (optionally of one ``status``), newest first, across all pages."""
        kwargs: dict[str, Any] = {
            "maxResults": page_size,
            "sortBy": "SubmissionTime",
            "sortOrder": sort_order,
        }
        if status is not None:
            kwargs["statusEquals"] = status
        if submit_time_after is not None:
            kwargs["submitTimeAfter"] = submit_time_after
        if submit_time_before is not None:
            kwargs["submitTimeBefore"] = submit_time_before
        seen = 0
        token: str | None = None
        while True:
            if token:
                kwargs["nextToken"] = token
            try:
                page = self.client.list_async_invokes(**kwargs)
            except (ClientError, BotoCoreError, OSError) as exc:
                raise from_exception(exc) from exc
            for item in page.get("asyncInvokeSummaries", []) or []:
                yield AsyncJobStatus.from_api(item)
                seen += 1
                if max_items is not None and seen >= max_items:
                    return
            token = page.get("nextToken")
            if not token:
                return


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentEmbedding:
    """One segment's line of an ``embedding-*.jsonl`` output (positions: chars for text,
    seconds for audio/video). ``vector`` is empty when ``status`` is FAILURE."""

    embedding_type: str
    vector: list[float]
    segment_index: int
    start_char: int | None = None
    end_char: int | None = None
    start_s: float | None = None
    end_s: float | None = None
    truncated_char_length: int | None = None
    status: str = "SUCCESS"
    failure_reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS" and bool(self.vector)


@dataclass(frozen=True)
class EmbeddingResultEntry:
    """One ``embeddingResults`` entry of ``segmented-embedding-result.json``."""

    embedding_type: str
    status: str
    failure_reason: str | None = None
    message: str | None = None
    output_file_uri: str | None = None


@dataclass(frozen=True)
class SegmentedResults:
    """A finished job's outputs: the result file, and every segment of every embedding type."""

    output_s3_uri: str
    source_file_uri: str | None
    embedding_dimension: int | None
    results: list[EmbeddingResultEntry]
    segments: list[SegmentEmbedding] = field(default_factory=list)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


def _s3_get(s3_client: Any, uri: str) -> bytes:
    bucket, key = split_s3_uri(uri)
    obj = s3_client.get_object(Bucket=bucket, Key=key)
    return bytes(obj["Body"].read())


def _opt_int(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _opt_float(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _parse_lines(data: bytes, uri: str) -> list[dict[str, Any]]:
    text = data.decode("utf-8").strip()
    if not text:
        return []
    # embedding-image.json is one JSON document; the *.jsonl files are one object a line.
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, dict):
        return [whole]
    if isinstance(whole, list):
        return [x for x in whole if isinstance(x, dict)]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as exc:
            raise BedrockCallError(
                CODE_MALFORMED_RESPONSE, ErrorClass.PERMANENT, f"{uri} line {n} is not JSON"
            ) from exc
    return out


def parse_segment_line(
    embedding_type: str, line: Mapping[str, Any], ordinal: int
) -> SegmentEmbedding:
    """One JSONL line -> :class:`SegmentEmbedding` (``ordinal`` when it has no segmentIndex)."""
    meta = line.get("segmentMetadata", {}) or {}
    idx = _opt_int(meta.get("segmentIndex"))
    vec = line.get("embedding") or []
    return SegmentEmbedding(
        embedding_type=str(line.get("embeddingType") or embedding_type),
        vector=[float(x) for x in vec],
        segment_index=idx if idx is not None else ordinal,
        start_char=_opt_int(meta.get("segmentStartCharPosition")),
        end_char=_opt_int(meta.get("segmentEndCharPosition")),
        start_s=_opt_float(meta.get("segmentStartSeconds")),
        end_s=_opt_float(meta.get("segmentEndSeconds")),
        truncated_char_length=_opt_int(
            meta.get("truncatedCharLength", line.get("truncatedCharLength"))
        ),
        status=str(line.get("status") or ("SUCCESS" if vec else "FAILURE")),
        failure_reason=line.get("failureReason"),
        message=line.get("message"),
    )


def read_segmented_results(output_s3_uri: str, s3_client: Any) -> SegmentedResults:
    """Read ``segmented-embedding-result.json`` under ``output_s3_uri`` (the job's folder, as
    ``GetAsyncInvoke`` returns it) and every output file it names."""
    base = output_s3_uri.rstrip("/")
    result_uri = f"{base}/{RESULT_FILE}"
    try:
        doc = json.loads(_s3_get(s3_client, result_uri))
    except (ClientError, BotoCoreError, OSError) as exc:
        raise from_exception(exc) from exc
    except ValueError as exc:
        raise BedrockCallError(
            CODE_MALFORMED_RESPONSE, ErrorClass.PERMANENT, f"{result_uri} is not JSON"
        ) from exc
    entries: list[EmbeddingResultEntry] = []
    segments: list[SegmentEmbedding] = []
    for item in doc.get("embeddingResults", []) or []:
        etype = str(item.get("embeddingType"))
        entry = EmbeddingResultEntry(
            embedding_type=etype,
            status=str(item.get("status")),
            failure_reason=item.get("failureReason"),
            message=item.get("message"),
            output_file_uri=item.get("outputFileUri"),
        )
        entries.append(entry)
        uri = entry.output_file_uri
        if not uri and entry.status != "FAILURE" and etype in OUTPUT_FILES:
            uri = f"{base}/{OUTPUT_FILES[etype]}"
        if not uri:
            continue
        try:
            data = _s3_get(s3_client, uri)
        except ClientError as exc:
            if entry.status == "FAILURE":
                continue  # a failed type may have no file at all
            raise from_exception(exc) from exc
        except (BotoCoreError, OSError) as exc:
            raise from_exception(exc) from exc
        for n, line in enumerate(_parse_lines(data, uri)):
            segments.append(parse_segment_line(etype, line, n))
    return SegmentedResults(
        output_s3_uri=base,
        source_file_uri=doc.get("sourceFileUri"),
        embedding_dimension=_opt_int(doc.get("embeddingDimension")),
        results=entries,
        segments=segments,
        raw=doc,
    )


# Module-level shorthands for callers holding a boto3 client.


def start_segmented(
    boto_client: Any,
    request: EmbeddingRequest,
    output_s3_uri: str,
    model_id: str = NOVA_MME_MODEL_ID,
    client_request_token: str | None = None,
) -> str:
    """See :meth:`NovaAsyncJobs.start_segmented`."""
    return NovaAsyncJobs(boto_client, model_id).start_segmented(
        request, output_s3_uri, client_request_token=client_request_token
    )


def wait(
    boto_client: Any,
    arn: str,
    poll_min_s: float = 0.5,
    poll_max_s: float = 15.0,
    timeout_s: float = 3600.0,
) -> AsyncJobStatus:
    """See :meth:`NovaAsyncJobs.wait`."""
    return NovaAsyncJobs(boto_client).wait(arn, poll_min_s, poll_max_s, timeout_s)


def list_jobs(boto_client: Any, status: str | None = None, **kwargs: Any) -> list[AsyncJobStatus]:
    """See :meth:`NovaAsyncJobs.list_jobs` (materialised)."""
    return list(NovaAsyncJobs(boto_client).list_jobs(status, **kwargs))
