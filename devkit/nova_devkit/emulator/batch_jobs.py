"""Batch inference on the control plane: CreateModelInvocationJob, GetModelInvocationJob,
ListModelInvocationJobs and StopModelInvocationJob, and the worker that runs the jobs.

Wire shapes follow botocore's ``bedrock`` service model (2023-04-20). A job reads every
``.jsonl`` file under its input URI (or the one file it names) through the emulator's S3, embeds
each record's ``modelInput`` with the same validation and engine as ``InvokeModel``, and writes,
under ``<output s3Uri>/<job id>/``, one ``<input file name>.out`` per input file (a line per
record: ``recordId``, ``modelInput`` and ``modelOutput``, or ``error`` with ``errorCode`` and
``errorMessage``) and ``manifest.json.out`` with the counts, before it turns ``Completed``.

What tests can script (:class:`~nova_devkit.emulator.config.EmulatorConfig`):
``batch_duration_s`` (time from submission to the end), ``batch_record_errors`` (a record whose
line contains a key fails with that error), ``batch_end_status`` (end a job ``PartiallyCompleted``
after ``batch_partial_fraction`` of its records, or ``Failed`` / ``Expired`` with no output),
``batch_shuffle_output`` (output lines in another order than the input's), ``batch_min_records``
and ``batch_max_in_progress`` (the service's quotas).
"""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nova_devkit.emulator.async_jobs import _parse_iso, iso
from nova_devkit.emulator.config import EmulatorConfig
from nova_devkit.emulator.engine import EmbeddingEngine
from nova_devkit.emulator.errors import ApiError, validation
from nova_devkit.emulator.s3 import EmulatorS3
from nova_devkit.emulator.validate import SINGLE, parse_model_input

STATUSES = (
    "Submitted",
    "InProgress",
    "Completed",
    "Failed",
    "Stopping",
    "Stopped",
    "PartiallyCompleted",
    "Expired",
    "Validating",
    "Scheduled",
)
ENDED = ("Completed", "Failed", "Stopped", "PartiallyCompleted", "Expired")
_ID_ALPHABET = string.ascii_lowercase + string.digits
# Patterns of botocore's bedrock model.
_JOB_NAME = r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}"
_ROLE_ARN = r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+"
_TOKEN = r"[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}"
_S3_URI = (
    r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?"
)
_JOB_ID = (
    r"((arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/)?[a-z0-9]{12})"
)
# One input file may be at most this big for the emulator (it holds it in memory).
_MAX_FILE_BYTES = 1 << 30


@dataclass
class BatchJob:
    """One model invocation job and its state."""

    job_id: str
    arn: str
    name: str
    model_id: str
    role_arn: str
    client_token: str
    fingerprint: str
    input_config: dict[str, Any]
    output_config: dict[str, Any]
    timeout_hours: int | None
    submit_time: float
    end_at: float
    status: str = "Submitted"
    message: str | None = None
    last_modified: float = 0.0
    end_time: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    stop_requested: bool = False

    def describe(self) -> dict[str, Any]:
        """The GetModelInvocationJob body (also each ListModelInvocationJobs summary)."""
        out: dict[str, Any] = {
            "jobArn": self.arn,
            "jobName": self.name,
            "modelId": self.model_id,
            "clientRequestToken": self.client_token,
            "roleArn": self.role_arn,
            "status": self.status,
            "submitTime": iso(self.submit_time),
            "lastModifiedTime": iso(self.last_modified or self.submit_time),
            "inputDataConfig": self.input_config,
            "outputDataConfig": self.output_config,
            "jobExpirationTime": iso(self.submit_time + 3600 * (self.timeout_hours or 24)),
            "modelInvocationType": "InvokeModel",
        }
        if self.timeout_hours is not None:
            out["timeoutDurationInHours"] = self.timeout_hours
        if self.message:
            out["message"] = self.message
        if self.end_time is not None:
            out["endTime"] = iso(self.end_time)
        for key in ("totalRecordCount", "processedRecordCount", "successRecordCount"):
            if key in self.counts:
                out[key] = self.counts[key]
        if "errorRecordCount" in self.counts:
            out["errorRecordCount"] = self.counts["errorRecordCount"]
        return out


class BatchJobStore:
    """The batch API's state and one worker thread per job."""

    def __init__(
        self,
        cfg: Callable[[], EmulatorConfig],
        engine: EmbeddingEngine,
        s3: EmulatorS3,
        resolve_model: Callable[[str], str],
    ) -> None:
        self._cfg = cfg
        self._engine = engine
        self._s3 = s3
        self._resolve = resolve_model
        self._lock = threading.Lock()
        self._jobs: dict[str, BatchJob] = {}
        self._by_token: dict[str, str] = {}
        self._generation = 0

    # -- API -------------------------------------------------------------------------------

    def create(self, body: Any) -> dict[str, Any]:
        """Validate a CreateModelInvocationJob body and start the job; ``{"jobArn"}``."""
        cfg = self._cfg()
        if not isinstance(body, dict):
            raise validation("Malformed request: body is not a JSON object")
        allowed = {
            "jobName", "roleArn", "clientRequestToken", "modelId", "inputDataConfig",
            "outputDataConfig", "vpcConfig", "timeoutDurationInHours", "tags",
            "modelInvocationType",
        }  # fmt: skip
        for key in body:
            if key not in allowed:
                raise validation(f"{key}: extraneous key is not permitted")
        for key in ("jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig"):
            if key not in body:
                raise validation(f"{key}: required key is missing")
        name, role = body["jobName"], body["roleArn"]
        if not isinstance(name, str) or len(name) > 63 or not re.fullmatch(_JOB_NAME, name):
            raise validation(f"jobName: {name!r} does not match {_JOB_NAME}")
        if not isinstance(role, str) or not re.fullmatch(_ROLE_ARN, role):
            raise validation(f"roleArn: {role!r} is not an IAM role ARN")
        token = body.get("clientRequestToken") or secrets.token_hex(16)
        if not isinstance(token, str) or not re.fullmatch(_TOKEN, token):
            raise validation("clientRequestToken: expected 1..256 alphanumeric characters")
        model = self._resolve(str(body["modelId"]))
        in_uri = _s3_uri(body["inputDataConfig"], "inputDataConfig", "s3InputDataConfig")
        out_uri = _s3_uri(body["outputDataConfig"], "outputDataConfig", "s3OutputDataConfig")
        hours = body.get("timeoutDurationInHours")
        if hours is not None and (not isinstance(hours, int) or not 24 <= hours <= 168):
            raise validation("timeoutDurationInHours: must be in [24, 168]")
        kind = body.get("modelInvocationType", "InvokeModel")
        if kind != "InvokeModel":
            raise validation("modelInvocationType: this model takes InvokeModel records only")
        fingerprint = json.dumps(
            {k: v for k, v in body.items() if k != "clientRequestToken"}, sort_keys=True
        )
        with self._lock:
            existing = self._by_token.get(token)
            if existing is not None:
                job = self._jobs[existing]
                if job.fingerprint != fingerprint:
                    raise ApiError(
                        "ConflictException",
                        "The clientRequestToken was already used with different parameters.",
                    )
                return {"jobArn": job.arn}
            if any(j.name == name for j in self._jobs.values()):
                raise ApiError("ConflictException", f"A job named {name} already exists.")
            limit = cfg.batch_max_in_progress
            running = sum(1 for j in self._jobs.values() if j.status not in ENDED)
            if limit > 0 and running >= limit:
                raise ApiError(
                    "ServiceQuotaExceededException",
                    f"You have reached the limit of {limit} batch inference jobs in progress.",
                )
        # The input is checked before the job exists (the service validates asynchronously,
        # in Validating; an early refusal is simpler to test and ends the same way).
        files = self._input_files(in_uri)
        records = sum(_count_lines(data) for _, data in files)
        if records < cfg.batch_min_records:
            raise validation(
                f"inputDataConfig: the job has {records} records, fewer than the minimum of "
                f"{cfg.batch_min_records} records per job"
            )
        if records > cfg.batch_max_records:
            raise validation(
                f"inputDataConfig: the job has {records} records, over the maximum of "
                f"{cfg.batch_max_records} records per job"
            )
        with self._lock:
            job_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
            now = time.time()
            job = BatchJob(
                job_id=job_id,
                arn=f"arn:aws:bedrock:{cfg.region}:{cfg.account_id}:model-invocation-job/{job_id}",
                name=name,
                model_id=str(body["modelId"]),
                role_arn=role,
                client_token=token,
                fingerprint=fingerprint,
                input_config=body["inputDataConfig"],
                output_config=body["outputDataConfig"],
                timeout_hours=hours,
                submit_time=now,
                end_at=now + cfg.batch_duration_s,
                last_modified=now,
            )
            self._jobs[job.arn] = job
            self._by_token[token] = job.arn
            generation = self._generation
        worker = threading.Thread(
            target=self._run, args=(job, generation, model, out_uri), daemon=True,
            name=f"emulator-batch-{job_id}",
        )  # fmt: skip
        worker.start()
        return {"jobArn": job.arn}

    def get(self, ident: str) -> dict[str, Any]:
        return self._find(ident).describe()

    def stop(self, ident: str) -> dict[str, Any]:
        job = self._find(ident)
        with self._lock:
            if job.status in ENDED:
                raise ApiError("ConflictException", f"Job {job.arn} has already ended.")
            job.stop_requested = True
            job.status, job.last_modified = "Stopping", time.time()
        return {}

    def list_jobs(self, query: Mapping[str, str]) -> dict[str, Any]:
        """The ListModelInvocationJobs body: filtered, sorted by creation time, paginated."""
        known = {
            "submitTimeAfter", "submitTimeBefore", "statusEquals", "nameContains", "maxResults",
            "nextToken", "sortBy", "sortOrder",
        }  # fmt: skip
        for key in query:
            if key not in known:
                raise validation(f"{key}: unknown query parameter")
        status = query.get("statusEquals")
        if status is not None and status not in STATUSES:
            raise validation(f"statusEquals: {status!r} is not one of {list(STATUSES)}")
        try:
            max_results = int(query.get("maxResults", "1000"))
        except ValueError as exc:
            raise validation("maxResults: expected an integer") from exc
        if not 1 <= max_results <= 1000:
            raise validation("maxResults: must be in [1, 1000]")
        if query.get("sortBy", "CreationTime") != "CreationTime":
            raise validation("sortBy: must be CreationTime")
        order = query.get("sortOrder", "Descending")
        if order not in ("Ascending", "Descending"):
            raise validation("sortOrder: must be Ascending or Descending")
        after = (
            _parse_iso(query["submitTimeAfter"], "submitTimeAfter")
            if "submitTimeAfter" in query
            else None
        )
        before = (
            _parse_iso(query["submitTimeBefore"], "submitTimeBefore")
            if "submitTimeBefore" in query
            else None
        )
        contains = query.get("nameContains")
        offset = 0
        if "nextToken" in query:
            try:
                offset = int(json.loads(base64.urlsafe_b64decode(query["nextToken"]))["offset"])
            except (ValueError, KeyError, TypeError) as exc:
                raise validation("nextToken: invalid pagination token") from exc
        with self._lock:
            jobs = [
                j
                for j in self._jobs.values()
                if (status is None or j.status == status)
                and (contains is None or contains in j.name)
                and (after is None or j.submit_time > after)
                and (before is None or j.submit_time < before)
            ]
            jobs.sort(key=lambda j: (j.submit_time, j.job_id), reverse=order == "Descending")
            page = [j.describe() for j in jobs[offset : offset + max_results]]
        out: dict[str, Any] = {"invocationJobSummaries": page}
        if offset + max_results < len(jobs):
            token = json.dumps({"offset": offset + max_results}).encode()
            out["nextToken"] = base64.urlsafe_b64encode(token).decode()
        return out

    def counts(self) -> dict[str, int]:
        """Jobs per status (the ones that occur)."""
        with self._lock:
            out: dict[str, int] = {}
            for j in self._jobs.values():
                out[j.status] = out.get(j.status, 0) + 1
            return out

    def reset(self) -> None:
        """Forget every job; workers still running drop their results."""
        with self._lock:
            self._jobs.clear()
            self._by_token.clear()
            self._generation += 1

    # -- worker ------------------------------------------------------------------------------

    def _find(self, ident: str) -> BatchJob:
        if not re.fullmatch(_JOB_ID, ident):
            raise validation(f"jobIdentifier: {ident!r} is not a job ARN or id")
        job_id = ident.rsplit("/", 1)[-1]
        with self._lock:
            for job in self._jobs.values():
                if job.job_id == job_id:
                    return job
        raise ApiError("ResourceNotFoundException", f"Job {ident} not found.")

    def _input_files(self, uri: str) -> list[tuple[str, bytes]]:
        """``(file name, bytes)`` of the job's input: the file ``uri`` names, or every ``.jsonl``
        under the prefix."""
        bucket, _, key = uri[len("s3://") :].partition("/")
        if key.endswith(".jsonl"):
            return [(key.rsplit("/", 1)[-1], self._s3.read(uri, _MAX_FILE_BYTES))]
        prefix = key if not key or key.endswith("/") else key + "/"
        try:
            pages = self._s3.client().get_paginator("list_objects_v2")
            keys = [
                o["Key"]
                for page in pages.paginate(Bucket=bucket, Prefix=prefix)
                for o in page.get("Contents", [])
                if o["Key"].endswith(".jsonl")
            ]
        except Exception as exc:
            raise validation(f"inputDataConfig: cannot list {uri} ({exc})") from exc
        if not keys:
            raise validation(f"inputDataConfig: no .jsonl file under {uri}")
        return [
            (k.rsplit("/", 1)[-1], self._s3.read(f"s3://{bucket}/{k}", _MAX_FILE_BYTES))
            for k in sorted(keys)
        ]

    def _set(self, job: BatchJob, generation: int, status: str, **fields: Any) -> bool:
        with self._lock:
            if generation != self._generation:
                return False
            job.status, job.last_modified = status, time.time()
            for k, v in fields.items():
                setattr(job, k, v)
            if status in ENDED:
                job.end_time = job.last_modified
            return True

    def _wait_until(self, job: BatchJob, when: float) -> bool:
        """Sleep until ``when``; False when the job was asked to stop meanwhile."""
        while time.time() < when:
            if job.stop_requested:
                return False
            time.sleep(min(0.05, max(0.0, when - time.time())))
        return not job.stop_requested

    def _run(self, job: BatchJob, generation: int, model: str, out_uri: str) -> None:
        cfg = self._cfg()
        span = max(0.0, job.end_at - job.submit_time)
        try:
            self._set(job, generation, "Validating")
            if not self._wait_until(job, job.submit_time + span * 0.1):
                self._set(job, generation, "Stopped")
                return
            self._set(job, generation, "InProgress")
            end = cfg.batch_end_status
            if end in ("Failed", "Expired"):
                self._wait_until(job, job.end_at)
                message = (
                    "Injected batch job failure."
                    if end == "Failed"
                    else "The job did not finish within its timeout."
                )
                self._set(job, generation, end, message=message)
                return
            lines, counts = self._process(job, cfg)
            if not self._wait_until(job, job.end_at):
                self._write(job, out_uri, lines, counts, generation)
                self._set(job, generation, "Stopped", counts=counts)
                return
            self._write(job, out_uri, lines, counts, generation)
            partial = end == "PartiallyCompleted"
            status = "PartiallyCompleted" if partial else "Completed"
            self._set(job, generation, status, counts=counts)
        except ApiError as exc:
            self._set(job, generation, "Failed", message=exc.message)
        except Exception as exc:  # a worker must never die silently: the job says why
            self._set(job, generation, "Failed", message=f"{type(exc).__name__}: {exc}")

    def _process(
        self, job: BatchJob, cfg: EmulatorConfig
    ) -> tuple[dict[str, list[str]], dict[str, int]]:
        """Every record embedded (or failed): output lines per input file, and the counts."""
        in_uri = job.input_config["s3InputDataConfig"]["s3Uri"]
        files = self._input_files(in_uri)
        total = sum(_count_lines(data) for _, data in files)
        # PartiallyCompleted: only this many records are processed; the rest have no line.
        budget = (
            int(total * cfg.batch_partial_fraction)
            if cfg.batch_end_status == "PartiallyCompleted"
            else total
        )
        out: dict[str, list[str]] = {}
        done = ok = bad = 0
        tokens = 0
        rng = random.Random(cfg.seed + 7)
        for name, data in files:
            lines: list[str] = []
            for raw in data.decode().splitlines():
                if not raw.strip():
                    continue
                if done >= budget:
                    break
                done += 1
                line, good, used = self._record(raw, cfg)
                ok += int(good)
                bad += int(not good)
                tokens += used
                lines.append(line)
            if cfg.batch_shuffle_output:
                rng.shuffle(lines)
            out[name] = lines
        counts = {
            "totalRecordCount": total,
            "processedRecordCount": done,
            "successRecordCount": ok,
            "errorRecordCount": bad,
            "inputTokenCount": tokens,
        }
        return out, counts

    def _record(self, raw: str, cfg: EmulatorConfig) -> tuple[str, bool, int]:
        """One output line for one input line: (line, succeeded, input tokens)."""
        try:
            record = json.loads(raw)
        except ValueError:
            err = {"errorCode": 400, "errorMessage": "The record is not valid JSON."}
            return json.dumps({"recordId": None, "error": err}), False, 0
        record_id = record.get("recordId") or "".join(
            secrets.choice(string.ascii_uppercase + string.digits) for _ in range(11)
        )
        model_input = record.get("modelInput")
        base = {"recordId": record_id, "modelInput": model_input}
        for marker, error in cfg.batch_record_errors.items():
            if marker in raw:
                code, _, message = str(error).partition(":")
                err = {"errorCode": _code(code), "errorMessage": message or "Injected error."}
                return json.dumps({**base, "error": err}), False, 0
        try:
            req = parse_model_input(model_input, expect_task=SINGLE)
            prepared = self._engine.prepare(req)
            embeddings = self._engine.embed(prepared)
        except ApiError as exc:
            err = {"errorCode": exc.status, "errorMessage": f"{exc.code}: {exc.message}"}
            return json.dumps({**base, "error": err}), False, 0
        return (
            json.dumps({**base, "modelOutput": {"embeddings": embeddings}}),
            True,
            prepared.tokens,
        )

    def _write(
        self,
        job: BatchJob,
        out_uri: str,
        lines: dict[str, list[str]],
        counts: dict[str, int],
        generation: int,
    ) -> None:
        if generation != self._generation:
            return
        folder = f"{out_uri.rstrip('/')}/{job.job_id}"
        for name, out in lines.items():
            payload = "".join(line + "\n" for line in out).encode()
            self._s3.write(f"{folder}/{name}.out", payload, "application/jsonl")
        manifest = {**counts, "outputTokenCount": 0}
        self._s3.write(
            f"{folder}/manifest.json.out", json.dumps(manifest).encode(), "application/json"
        )


def _s3_uri(config: Any, name: str, member: str) -> str:
    if not isinstance(config, dict) or not isinstance(config.get(member), dict):
        raise validation(f"{name}.{member}: required key is missing")
    uri = config[member].get("s3Uri")
    if not isinstance(uri, str) or not re.fullmatch(_S3_URI, uri):
        raise validation(f"{name}.{member}.s3Uri: {uri!r} is not an s3 URI")
    return uri


def _count_lines(data: bytes) -> int:
    return sum(1 for line in data.splitlines() if line.strip())


def _code(code: str) -> int | str:
    """A scripted error code: an HTTP status as a number (as the service writes it), else as is."""
    return int(code) if code.strip().isdigit() else code.strip()
