"""Bedrock batch inference on the control plane: records, jobs and their outputs.

A record is one line of a JSONL input file: ``{"recordId", "modelInput"}``, ``modelInput`` being
exactly the ``InvokeModel`` body the on-demand path sends for the same segment. The job is
``CreateModelInvocationJob`` (``boto3.client("bedrock")``); its outputs are one
``<input file name>.out`` per input file under ``<output s3Uri>/<job id>/`` (a line per record:
``modelOutput``, the ``InvokeModel`` response body, or ``error`` with ``errorCode`` and
``errorMessage``) and ``manifest.json.out`` with the counts. Output lines are matched to inputs by
``recordId`` only: the service does not promise their order.

Every call goes through the project's retry helper (:func:`pipelines.core.retry.retry_call`),
classified by error code (:mod:`pipelines.bedrock.errors`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pipelines.config.schema import BedrockConfig

T = TypeVar("T")

# Job states (botocore's ModelInvocationJobStatus) and what they mean to the pipeline.
ENDED = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
RUNNING = frozenset({"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"})
# A record's HTTP status in an output ``error`` (the service writes a number) -> service code.
_STATUS_CODES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def record_id(asset_id: str, content_version: str | None, segment_index: int) -> str:
    """The record id of one segment of one version of an asset: deterministic, so that a
    re-run stages the same records (and names the same jobs), and alphanumeric, as the
    service's record ids are."""
    name = f"{asset_id}#{content_version or ''}#{int(segment_index)}"
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def job_identity(collection: str, record_ids: list[str], attempt: int = 1) -> tuple[str, str]:
    """``(job name, client token)`` of a job holding these records in this collection: the same
    records give the same job, so a run that was killed after submitting finds it (by name) or
    gets it back from the service (by token) instead of paying twice. ``attempt`` counts the
    jobs of the same records already collected (an expired job's records are submitted again
    under a new name and token)."""
    digest = hashlib.sha256(collection.encode())
    if attempt > 1:
        digest.update(f"#attempt{attempt}".encode())
    for rid in record_ids:
        digest.update(rid.encode())
    hexed = digest.hexdigest()
    return f"nova-mme-{hexed[:24]}", hexed[:48]


def service_code(error: Any) -> tuple[str, str]:
    """``(service error code, message)`` of a record's output ``error`` object; a numeric
    ``errorCode`` (an HTTP status, as the service writes it) is mapped to its error name."""
    if not isinstance(error, dict):
        return "ServiceError", f"unreadable error object: {error!r:.200}"
    raw = error.get("errorCode")
    message = str(error.get("errorMessage") or "")
    if isinstance(raw, int) or (isinstance(raw, str) and raw.strip().isdigit()):
        status = int(raw)
        return _STATUS_CODES.get(status, f"HTTP{status}"), f"errorCode {status}: {message}"
    return str(raw or "ServiceError"), f"errorCode {raw}: {message}"


@dataclass(frozen=True)
class JobState:
    """What GetModelInvocationJob says of one job."""

    arn: str
    name: str
    status: str
    message: str | None
    output_uri: str
    counts: dict[str, int]

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def job_id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]


def make_control_client(cfg: BedrockConfig) -> Any:
    """A boto3 ``bedrock`` (control plane) client: one attempt per call (we retry)."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=cfg.region,
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=cfg.connect_timeout_s,
        read_timeout=cfg.read_timeout_s,
    )
    return boto3.client(
        "bedrock", region_name=cfg.region, endpoint_url=cfg.endpoint_url, config=config
    )


class BatchJobClient:
    """CreateModelInvocationJob, GetModelInvocationJob, ListModelInvocationJobs and
    StopModelInvocationJob, each retried on throttling and transient errors."""

    def __init__(self, cfg: BedrockConfig, model_id: str, client: Any | None = None) -> None:
        self.cfg, self.model_id = cfg, model_id
        self.client = client or make_control_client(cfg)
        self._rng = random.Random()

    def _call(self, fn: Callable[[], T]) -> T:
        from pipelines.bedrock.errors import BedrockRetryRule, from_exception, retry_policy
        from pipelines.core.retry import retry_call

        try:
            return retry_call(
                fn,
                BedrockRetryRule(self.cfg.max_attempts - 1),
                retry_policy(self.cfg),
                rng=self._rng,
            )
        except Exception as exc:
            err = from_exception(exc)
            if err is exc:
                raise
            raise err from exc

    def create(self, name: str, token: str, input_uri: str, output_uri: str) -> str:
        """Submit a job; returns its ARN (the same token returns the same job)."""
        body: dict[str, Any] = {
            "jobName": name,
            "roleArn": self.cfg.batch.role_arn,
            "clientRequestToken": token,
            "modelId": self.model_id,
            "inputDataConfig": {
                "s3InputDataConfig": {"s3Uri": input_uri, "s3InputFormat": "JSONL"}
            },
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": output_uri}},
            "timeoutDurationInHours": self.cfg.batch.timeout_hours,
        }
        out = self._call(lambda: self.client.create_model_invocation_job(**body))
        return str(out["jobArn"])

    def get(self, ident: str) -> JobState:
        out = self._call(lambda: self.client.get_model_invocation_job(jobIdentifier=ident))
        return _state(out)

    def find(self, name: str) -> JobState | None:
        """The job named ``name`` (names are unique per account), or None."""
        out = self._call(
            lambda: self.client.list_model_invocation_jobs(nameContains=name, maxResults=100)
        )
        for summary in out.get("invocationJobSummaries", []):
            if summary.get("jobName") == name:
                return _state(summary)
        return None

    def stop(self, ident: str) -> None:
        self._call(lambda: self.client.stop_model_invocation_job(jobIdentifier=ident))

    def check_access(self) -> None:
        """The preflight: one ListModelInvocationJobs call (credentials, region, endpoint)."""
        self._call(lambda: self.client.list_model_invocation_jobs(maxResults=1))


def _state(out: dict[str, Any]) -> JobState:
    counts: dict[str, int] = {
        k: int(out[k])
        for k in (
            "totalRecordCount",
            "processedRecordCount",
            "successRecordCount",
            "errorRecordCount",
        )
        if k in out
    }
    return JobState(
        arn=str(out["jobArn"]),
        name=str(out.get("jobName") or ""),
        status=str(out["status"]),
        message=out.get("message"),
        output_uri=str(out["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]),
        counts=counts,
    )


def output_lines(s3: Any, output_folder: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(file name, parsed line)`` of every ``.jsonl.out`` under a job's output folder
    (``<output s3Uri>/<job id>/``), streamed line by line."""
    from pipelines.core.io import split_s3_uri

    bucket, prefix = split_s3_uri(output_folder.rstrip("/") + "/")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if not key.endswith(".jsonl.out"):
                continue
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            for raw in body.iter_lines():
                if raw.strip():
                    yield key.rsplit("/", 1)[-1], json.loads(raw)


def read_manifest(s3: Any, output_folder: str) -> dict[str, Any] | None:
    """``manifest.json.out`` of a job (the counts), or None when the job wrote none."""
    from botocore.exceptions import ClientError

    from pipelines.core.io import split_s3_uri

    bucket, key = split_s3_uri(output_folder.rstrip("/") + "/manifest.json.out")
    try:
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError:
        return None
    doc = json.loads(data)
    return doc if isinstance(doc, dict) else None
