"""StartAsyncInvoke / GetAsyncInvoke / ListAsyncInvokes and the background segmentation worker.

A job reads its input through the same S3 endpoint as everything else, segments and embeds it in a
worker thread, writes the output folder ``<s3Uri>/<invocation-id>/`` and only then turns
``Completed``, so a poller that sees ``Completed`` can read every file.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nova_devkit.emulator.config import EmulatorConfig
from nova_devkit.emulator.engine import EmbeddingEngine
from nova_devkit.emulator.errors import ApiError, validation
from nova_devkit.emulator.validate import SEGMENTED, EmbeddingRequest, parse_model_input

STATUSES = ("InProgress", "Completed", "Failed")
_ID_ALPHABET = string.ascii_lowercase + string.digits
_S3_OUT = r"s3://[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9](/.*)?"

S3Writer = Callable[[str, bytes, str], None]


def iso(ts: float) -> str:
    """ISO-8601 UTC with milliseconds, the way the service writes timestamps."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _parse_iso(value: str, name: str) -> float:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise validation(f"{name}: {value!r} is not an ISO-8601 timestamp") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


@dataclass
class AsyncJob:
    """One async invocation and its state."""

    invocation_id: str
    arn: str
    model_arn: str
    client_token: str
    fingerprint: str
    output_uri: str
    output_extra: dict[str, str]
    submit_time: float
    request: EmbeddingRequest
    status: str = "InProgress"
    last_modified: float = 0.0
    end_time: float | None = None
    failure_message: str | None = None
    fail_on_purpose: bool = False
    files: list[str] = field(default_factory=list)

    @property
    def output_folder(self) -> str:
        """``<s3Uri>/<invocation-id>``: where the files are (and what GetAsyncInvoke returns)."""
        return f"{self.output_uri.rstrip('/')}/{self.invocation_id}"

    def describe(self) -> dict[str, Any]:
        """The GetAsyncInvoke body (also each ListAsyncInvokes summary)."""
        out: dict[str, Any] = {
            "invocationArn": self.arn,
            "modelArn": self.model_arn,
            "clientRequestToken": self.client_token,
            "status": self.status,
            "submitTime": iso(self.submit_time),
            "lastModifiedTime": iso(self.last_modified or self.submit_time),
            "outputDataConfig": {
                "s3OutputDataConfig": {"s3Uri": self.output_folder, **self.output_extra}
            },
        }
        if self.end_time is not None:
            out["endTime"] = iso(self.end_time)
        if self.failure_message is not None:
            out["failureMessage"] = self.failure_message
        return out


class AsyncJobStore:
    """The async API's state and worker pool for one server."""

    def __init__(
        self,
        cfg: Callable[[], EmulatorConfig],
        engine: EmbeddingEngine,
        write_s3: S3Writer,
        model_arn: Callable[[str], str],
    ) -> None:
        self._cfg = cfg
        self._engine = engine
        self._write_s3 = write_s3
        self._model_arn = model_arn
        self._lock = threading.Lock()
        self._jobs: dict[str, AsyncJob] = {}
        self._by_token: dict[str, str] = {}
        self._generation = 0
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, cfg().async_workers), thread_name_prefix="emulator-async"
        )

    # -- API -------------------------------------------------------------------------------

    def start(self, body: Mapping[str, Any], model_id: str, fail: bool = False) -> str:
        """Validate a StartAsyncInvoke body and queue the job; returns the invocation ARN."""
        import re

        cfg = self._cfg()
        _allowed = ("clientRequestToken", "modelId", "modelInput", "outputDataConfig", "tags")
        for key in body:
            if key not in _allowed:
                raise validation(f"{key}: extraneous key is not permitted")
        token = body.get("clientRequestToken")
        if token is None:
            token = secrets.token_hex(16)
        if not isinstance(token, str) or not 1 <= len(token) <= 256:
            raise validation("clientRequestToken: expected 1..256 printable characters")
        if "modelInput" not in body:
            raise validation("modelInput: required key is missing")
        req = parse_model_input(body["modelInput"], expect_task=SEGMENTED)
        odc = body.get("outputDataConfig")
        if not isinstance(odc, dict) or not isinstance(odc.get("s3OutputDataConfig"), dict):
            raise validation("outputDataConfig.s3OutputDataConfig: required key is missing")
        s3cfg = odc["s3OutputDataConfig"]
        uri = s3cfg.get("s3Uri")
        if not isinstance(uri, str) or not re.fullmatch(_S3_OUT, uri):
            raise validation(f"outputDataConfig.s3OutputDataConfig.s3Uri: {uri!r} is not an s3 URI")
        extra = {k: str(s3cfg[k]) for k in ("kmsKeyId", "bucketOwner") if k in s3cfg}
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
                return job.arn
            limit = cfg.async_max_in_progress
            running = sum(1 for j in self._jobs.values() if j.status == "InProgress")
            if limit > 0 and running >= limit:
                raise ApiError(
                    "ServiceQuotaExceededException",
                    f"You have reached the limit of {limit} in-progress async invocations.",
                )
            inv_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
            now = time.time()
            job = AsyncJob(
                invocation_id=inv_id,
                arn=f"arn:aws:bedrock:{cfg.region}:{cfg.account_id}:async-invoke/{inv_id}",
                model_arn=self._model_arn(model_id),
                client_token=token,
                fingerprint=fingerprint,
                output_uri=uri,
                output_extra=extra,
                submit_time=now,
                last_modified=now,
                request=req,
                fail_on_purpose=fail,
            )
            self._jobs[job.arn] = job
            self._by_token[token] = job.arn
            generation = self._generation
        self._pool.submit(self._run, job, generation)
        return job.arn

    def get(self, arn: str) -> dict[str, Any]:
        """The GetAsyncInvoke body, or the configured not-found error."""
        import re

        if not re.fullmatch(
            r"arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:async-invoke/[a-z0-9]{12}", arn
        ):
            raise validation(f"invocationArn: {arn!r} is not an async-invoke ARN")
        with self._lock:
            job = self._jobs.get(arn)
            if job is None:
                raise ApiError(self._cfg().async_not_found_code, f"Invocation {arn} not found.")
            return job.describe()

    def list(self, query: Mapping[str, str]) -> dict[str, Any]:
        """The ListAsyncInvokes body: filtered, sorted by submit time, paginated."""
        known = {
            "statusEquals", "maxResults", "nextToken", "submitTimeAfter", "submitTimeBefore",
            "sortBy", "sortOrder",
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
        if query.get("sortBy", "SubmissionTime") != "SubmissionTime":
            raise validation("sortBy: must be SubmissionTime")
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
                and (after is None or j.submit_time > after)
                and (before is None or j.submit_time < before)
            ]
            jobs.sort(key=lambda j: (j.submit_time, j.invocation_id), reverse=order == "Descending")
            page = [j.describe() for j in jobs[offset : offset + max_results]]
        out: dict[str, Any] = {"asyncInvokeSummaries": page}
        if offset + max_results < len(jobs):
            token = json.dumps({"offset": offset + max_results}).encode()
            out["nextToken"] = base64.urlsafe_b64encode(token).decode()
        return out

    def counts(self) -> dict[str, int]:
        """Jobs per status."""
        with self._lock:
            out = dict.fromkeys(STATUSES, 0)
            for j in self._jobs.values():
                out[j.status] += 1
            return out

    def reset(self) -> None:
        """Forget every job; workers still running drop their results."""
        with self._lock:
            self._jobs.clear()
            self._by_token.clear()
            self._generation += 1

    def shutdown(self) -> None:
        """Stop the worker pool without waiting for running jobs."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- worker ------------------------------------------------------------------------------

    def _finish(self, job: AsyncJob, generation: int, status: str, message: str | None) -> None:
        # Leave the job InProgress for at least async_min_duration_s so pollers see that state.
        remaining = job.submit_time + self._cfg().async_min_duration_s - time.time()
        if remaining > 0:
            time.sleep(remaining)
        with self._lock:
            if generation != self._generation:
                return
            now = time.time()
            job.status, job.failure_message = status, message
            job.last_modified = job.end_time = now

    def _run(self, job: AsyncJob, generation: int) -> None:
        try:
            if job.fail_on_purpose:
                raise ApiError("InternalServerException", "Injected async job failure.")
            self._write_outputs(job)
        except ApiError as exc:
            self._finish(job, generation, "Failed", exc.message)
        except Exception as exc:  # a worker must never die silently: the job says why it failed
            self._finish(job, generation, "Failed", f"{type(exc).__name__}: {exc}")
        else:
            self._finish(job, generation, "Completed", None)

    def _write_outputs(self, job: AsyncJob) -> None:
        req = job.request
        prepared = self._engine.prepare(req)
        files = self._engine.segment(prepared)
        folder = job.output_folder
        results = []
        counts: dict[str, int] = {}
        for name, (emb_type, records) in files.items():
            uri = f"{folder}/{name}"
            if name.endswith(".json"):
                payload = json.dumps(records[0]).encode()
            else:
                payload = "".join(json.dumps(r) + "\n" for r in records).encode()
            self._write_s3(uri, payload, "application/json")
            failed = [r for r in records if r["status"] != "SUCCESS"]
            entry: dict[str, Any] = {
                "embeddingType": emb_type,
                "status": "SUCCESS"
                if not failed
                else ("FAILURE" if len(failed) == len(records) else "PARTIAL_SUCCESS"),
                "outputFileUri": uri,
            }
            if failed:
                entry["failureReason"] = failed[0].get("failureReason")
                entry["message"] = failed[0].get("message")
            results.append(entry)
            counts[emb_type] = len(records)
            job.files.append(uri)
        source_uri = req.source.s3_uri if req.source is not None else None
        summary = {
            "sourceFileUri": source_uri,
            "embeddingDimension": req.dimension,
            "embeddingResults": results,
        }
        self._write_s3(
            f"{folder}/segmented-embedding-result.json",
            json.dumps(summary).encode(),
            "application/json",
        )
        # manifest.json's real contents are undocumented; this one lists what was written.
        manifest = {
            "invocationArn": job.arn,
            "modelArn": job.model_arn,
            "sourceFileUri": source_uri,
            "embeddingDimension": req.dimension,
            "outputFiles": job.files,
            "segmentCounts": counts,
            "producer": "nova_devkit.emulator (local emulator, not the model)",
        }
        self._write_s3(f"{folder}/manifest.json", json.dumps(manifest).encode(), "application/json")
