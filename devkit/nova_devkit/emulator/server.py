"""The local Bedrock Runtime-compatible HTTP endpoint.

:class:`EmulatorServer` serves ``InvokeModel``, ``StartAsyncInvoke``, ``GetAsyncInvoke`` and
``ListAsyncInvokes`` with the service's wire shapes on loopback, so unmodified boto3 (given
``endpoint_url``) runs its real signing, serialisation, retry and error-parsing code against it.
It also enforces quotas, adds latency, injects faults and records every request; all of that is
controlled from Python (methods on the server) or over HTTP under ``/_emulator/``.

It is not the model: see ``nova_devkit/emulator/README.md``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from nova_devkit.emulator.async_jobs import AsyncJobStore
from nova_devkit.emulator.config import EmulatorConfig, EmulatorLatencyConfig, EmulatorQuotaConfig
from nova_devkit.emulator.engine import EmbeddingEngine
from nova_devkit.emulator.errors import (
    ASYNC_JOB_FAILURE,
    DROPPED_CONNECTION,
    ERROR_STATUS,
    MALFORMED_BODY,
    ApiError,
    injected,
    validation,
)
from nova_devkit.emulator.faults import FaultInjector, Outcome, check_rates
from nova_devkit.emulator.quotas import QuotaEnforcer
from nova_devkit.emulator.validate import SINGLE, parse_model_input

log = logging.getLogger(__name__)

# Which request paths are the service's operations (the rest are /_emulator/ control or 404).
OPERATIONS = ("InvokeModel", "StartAsyncInvoke", "GetAsyncInvoke", "ListAsyncInvokes")
_RUNTIME_KEYS = {"host", "port", "s3_port"}  # fixed once the server listens


@dataclass
class RequestRecord:
    """One request as it crossed the wire (bodies summarised: no base64, long text cut)."""

    seq: int
    timestamp: float
    request_id: str
    method: str
    path: str
    operation: str
    model_id: str | None
    body: Any
    status: int = 0
    error_code: str | None = None
    error_message: str | None = None
    injected: str | None = None
    modality: str | None = None
    tokens: int | None = None
    duration_ms: float = 0.0
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)


def summarize_body(value: Any, preview: int) -> Any:
    """A copy of a JSON body without large payloads: ``bytes`` become ``"<N base64 chars>"`` and
    text values longer than ``preview`` characters are cut (their length is kept)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "bytes" and isinstance(v, str):
                out[k] = f"<{len(v)} base64 chars>"
            elif k == "value" and isinstance(v, str) and len(v) > preview:
                out[k] = v[:preview] + "..."
                out["valueLength"] = len(v)
            else:
                out[k] = summarize_body(v, preview)
        return out
    if isinstance(value, list):
        return [summarize_body(v, preview) for v in value]
    return value


def merge_config(base: EmulatorConfig, update: Mapping[str, Any]) -> EmulatorConfig:
    """``base`` with a partial update applied; ``faults`` is replaced as a whole, ``quota`` and
    ``latency`` are merged key by key. Unknown keys and wrong types raise ValueError."""
    cfg = copy.deepcopy(base)
    fields = {f.name: f for f in dataclasses.fields(EmulatorConfig)}
    for key, value in update.items():
        if key not in fields:
            raise ValueError(f"unknown emulator config key {key!r}")
        if key in _RUNTIME_KEYS and value != getattr(cfg, key):
            raise ValueError(f"{key} cannot change while the server runs")
        current = getattr(cfg, key)
        if isinstance(current, EmulatorQuotaConfig | EmulatorLatencyConfig):
            if not isinstance(value, Mapping):
                raise ValueError(f"{key} must be a mapping")
            sub_fields = {f.name for f in dataclasses.fields(current)}
            for sk, sv in value.items():
                if sk not in sub_fields:
                    raise ValueError(f"unknown key {key}.{sk}")
                setattr(current, sk, float(sv))
        elif key == "faults":
            if not isinstance(value, Mapping):
                raise ValueError("faults must be a mapping of code to probability")
            cfg.faults = check_rates(value)
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be a boolean")
            setattr(cfg, key, value)
        elif isinstance(current, int | float) and not isinstance(current, bool):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number")
            setattr(cfg, key, type(current)(value))
        elif isinstance(current, list):
            setattr(cfg, key, [str(v) for v in value])
        else:
            setattr(cfg, key, value)
    return cfg


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], emulator: EmulatorServer) -> None:
        self.emulator = emulator
        super().__init__(addr, _Handler)


class EmulatorServer:
    """A Bedrock Runtime-compatible endpoint on loopback (see the module docstring).

    ``s3_endpoint_url`` is where ``s3Location`` sources are read and async outputs written
    (moto's server locally); the S3 client uses explicit dummy credentials.
    """

    def __init__(
        self, cfg: EmulatorConfig | None = None, *, s3_endpoint_url: str | None = None
    ) -> None:
        self._initial = copy.deepcopy(cfg) if cfg is not None else EmulatorConfig()
        self._cfg = copy.deepcopy(self._initial)
        check_rates(self._cfg.faults)
        self.s3_endpoint_url = s3_endpoint_url
        self._lock = threading.Lock()
        self._s3: Any = None
        self._quotas = QuotaEnforcer(self._cfg.quota)
        self._faults = FaultInjector(self._cfg.faults, self._cfg.seed)
        self._latency_rng = random.Random(self._cfg.seed + 1)
        self._engine = EmbeddingEngine(lambda: self._cfg, self._read_s3)
        self._jobs = AsyncJobStore(lambda: self._cfg, self._engine, self._write_s3, self.model_arn)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._reset_counters()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        """Listen on ``host:port`` (port 0 picks a free one) and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self._cfg.host, self._cfg.port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="bedrock-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._jobs.shutdown()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port actually bound."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port``: pass it to boto3 as ``endpoint_url``."""
        return f"http://{self._cfg.host}:{self.port}"

    # -- control -----------------------------------------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        """A copy of the configuration in force."""
        return copy.deepcopy(self._cfg)

    def configure(self, update: Mapping[str, Any] | None = None, **kwargs: Any) -> EmulatorConfig:
        """Change quotas, latency, faults (or other non-network settings) at runtime.

        ``configure(quota={"requests_per_minute": 60}, faults={"ThrottlingException": 0.2})``;
        ``faults`` replaces the whole mapping, ``quota``/``latency`` merge key by key.
        Returns the configuration now in force.
        """
        changes = {**(update or {}), **kwargs}
        with self._lock:
            new = merge_config(self._cfg, changes)
            self._apply(new, reseed="seed" in changes)
            return copy.deepcopy(self._cfg)

    def _apply(self, new: EmulatorConfig, reseed: bool) -> None:
        self._cfg = new
        self._quotas.configure(new.quota)
        self._faults.configure(new.faults, new.seed if reseed else None)
        if reseed:
            self._latency_rng = random.Random(new.seed + 1)

    def script(self, outcomes: Iterable[str | Mapping[str, Any] | Outcome]) -> int:
        """Queue outcomes for the next requests of ``fault_operations`` (before random faults):
        ``"ok"``, an error code, ``"DroppedConnection"``, ``"MalformedBody"``,
        ``"AsyncJobFailure"`` or ``{"code", "message", "delay_ms"}``. Returns the queue length."""
        return self._faults.script(outcomes)

    def reset(self) -> None:
        """Back to the start-up config; clear stats, records, scripts and async jobs."""
        with self._lock:
            self._faults.clear_script()
            self._apply(copy.deepcopy(self._initial), reseed=True)
            self._reset_counters()
        self._jobs.reset()

    def _reset_counters(self) -> None:
        self._records: list[RequestRecord] = []
        self._seq = 0
        self._by_op: Counter[str] = Counter()
        self._by_modality: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()
        self._tokens = 0
        self._successes = 0
        self._throttles = 0
        self._in_flight = 0
        self._max_in_flight = 0

    @property
    def requests(self) -> list[RequestRecord]:
        """The recorded service requests, oldest first (a copy)."""
        with self._lock:
            return list(self._records)

    def stats(self) -> dict[str, Any]:
        """Counters since the last reset."""
        with self._lock:
            out = {
                "requests": sum(self._by_op.values()),
                "by_operation": dict(self._by_op),
                "by_modality": dict(self._by_modality),
                "successes": self._successes,
                "throttles": self._throttles,
                "errors": dict(self._errors),
                "injected": dict(self._injected),
                "tokens": self._tokens,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "script_pending": self._faults.pending,
            }
        out["async_jobs"] = self._jobs.counts()
        return out

    # -- helpers used by the engine and the handler --------------------------------------------

    def model_arn(self, model_id: str) -> str:
        """The foundation-model ARN of a model id."""
        return f"arn:aws:bedrock:{self._cfg.region}::foundation-model/{model_id}"

    def resolve_model(self, model_id: str) -> str:
        """The plain model id of a model id or foundation-model ARN, else ValidationException."""
        cfg = self._cfg
        prefix = f"arn:aws:bedrock:{cfg.region}::foundation-model/"
        plain = model_id[len(prefix) :] if model_id.startswith(prefix) else model_id
        if plain not in cfg.model_ids:
            raise validation("The provided model identifier is invalid.")
        return plain

    def _s3_client(self) -> Any:
        if self.s3_endpoint_url is None:
            raise validation("no S3 endpoint is configured for this emulator")
        with self._lock:
            if self._s3 is None:
                import boto3
                from botocore.config import Config

                # Explicit dummy credentials: the local S3 never needs real ones, and the
                # emulator must not pick up whatever the environment holds.
                self._s3 = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.s3_endpoint_url,
                    region_name=self._cfg.region,
                    aws_access_key_id="emulator",
                    aws_secret_access_key="emulator",
                    config=Config(retries={"total_max_attempts": 2}),
                )
            return self._s3

    def _read_s3(self, uri: str, max_bytes: int) -> bytes:
        from botocore.exceptions import ClientError

        from nova_devkit.emulator.validate import _S3_URI

        m = _S3_URI.match(uri)
        if not m:
            raise validation(f"{uri!r} is not an s3://bucket/key URI")
        try:
            obj = self._s3_client().get_object(Bucket=m.group(1), Key=m.group(2))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound"):
                raise validation(f"S3 object {uri} not found") from exc
            raise validation(f"S3 object {uri} cannot be read ({code})") from exc
        size = int(obj.get("ContentLength", 0))
        if size > max_bytes:
            obj["Body"].close()
            raise validation(f"S3 object {uri} is {size} bytes, over the {max_bytes}-byte limit")
        return bytes(obj["Body"].read())

    def _write_s3(self, uri: str, data: bytes, content_type: str) -> None:
        from botocore.exceptions import ClientError

        bucket, _, key = uri[len("s3://") :].partition("/")
        try:
            self._s3_client().put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise validation(f"cannot write {uri} ({code})") from exc

    def _latency_s(self, kind: str | None) -> float:
        cfg = self._cfg
        with self._lock:
            jitter = self._latency_rng.uniform(0.0, cfg.jitter_ms) if cfg.jitter_ms > 0 else 0.0
        extra = float(getattr(cfg.latency, kind, 0.0)) if kind else 0.0
        return max(0.0, cfg.latency_ms + jitter + extra) / 1000.0

    def _begin(self, rec: RequestRecord) -> None:
        with self._lock:
            self._seq += 1
            rec.seq = self._seq
            self._by_op[rec.operation] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _end(self, rec: RequestRecord) -> None:
        with self._lock:
            self._in_flight -= 1
            if rec.modality:
                self._by_modality[rec.modality] += 1
            if rec.injected:
                self._injected[rec.injected] += 1
            if rec.error_code:
                self._errors[rec.error_code] += 1
                if rec.error_code == "ThrottlingException":
                    self._throttles += 1
            elif rec.status == 200:
                self._successes += 1
                self._tokens += rec.tokens or 0
            self._records.append(rec)
            overflow = len(self._records) - self._cfg.max_recorded_requests
            if overflow > 0:
                del self._records[:overflow]


class _Dropped(Exception):
    """The scripted fault: close the socket without answering."""


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections are closed after this many seconds (frees their threads).
    timeout = 300
    # The record of the request being served; closed (counted) just before the answer is sent.
    _rec: RequestRecord | None = None
    _rec_started: float = 0.0
    server_version = "BedrockEmulator"
    sys_version = ""

    def version_string(self) -> str:
        return "BedrockEmulator"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- plumbing ----------------------------------------------------------------------------

    def _read_body(self, limit: int | None) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if limit is not None and length > limit:
            # Drain the body so the client reads our answer instead of a reset connection.
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            self.close_connection = True
            raise validation(
                f"Input is too long for requested model: request body is {length} bytes, over "
                f"the {limit}-byte limit"
            )
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes,
        request_id: str,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # Record first: a client that has its answer must find its request in the records.
        self._close_record()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", request_id)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, err: ApiError, request_id: str, rec: RequestRecord | None) -> None:
        if rec is not None:
            rec.status, rec.error_code, rec.error_message = err.status, err.code, err.message
        self._send(err.status, err.body(), request_id, headers=err.headers())

    def _close_record(self) -> None:
        rec = getattr(self, "_rec", None)
        if rec is not None:
            self._rec = None
            rec.duration_ms = round((time.perf_counter() - self._rec_started) * 1000.0, 3)
            self.server.emulator._end(rec)

    def _drop(self) -> None:
        self._close_record()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- dispatch ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        # Split the *raw* path: the model id and the ARN arrive percent-encoded (%2F for "/").
        segs = [s for s in parts.path.split("/") if s]
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if segs and segs[0] == "_emulator":
            self._control(method, segs[1:])
            return
        route: tuple[str, str | None] | None = None
        if method == "POST" and len(segs) == 3 and segs[0] == "model" and segs[2] == "invoke":
            route = ("InvokeModel", unquote(segs[1]))
        elif method == "POST" and segs == ["async-invoke"]:
            route = ("StartAsyncInvoke", None)
        elif method == "GET" and segs == ["async-invoke"]:
            route = ("ListAsyncInvokes", None)
        elif method == "GET" and len(segs) == 2 and segs[0] == "async-invoke":
            route = ("GetAsyncInvoke", unquote(segs[1]))
        if route is None:
            self._read_body(None)
            err = ApiError("UnknownOperationException", "Unknown operation.", status=404)
            self._send_error(err, str(uuid.uuid4()), None)
            return
        self._operation(method, route[0], route[1], query)

    def _operation(self, method: str, op: str, ident: str | None, query: dict[str, str]) -> None:
        emu = self.server.emulator
        cfg = emu._cfg
        rid = str(uuid.uuid4())
        started = time.perf_counter()
        rec = RequestRecord(
            seq=0,
            timestamp=time.time(),
            request_id=rid,
            method=method,
            path=self.path,
            operation=op,
            model_id=ident if op == "InvokeModel" else None,
            body=None,
            headers={
                k: v
                for k, v in self.headers.items()
                if k.lower() in ("content-type", "accept", "x-amzn-bedrock-trace")
            },
        )
        emu._begin(rec)
        self._rec = rec
        self._rec_started = started
        try:
            self._serve(emu, cfg, op, ident, query, rec, rid, started)
        except _Dropped:
            self._drop()
        except ApiError as err:
            self._send_error(err, rid, rec)
        except (BrokenPipeError, ConnectionResetError):
            rec.error_code = rec.error_code or "ClientDisconnected"
        except Exception as exc:  # a bug here must reach the client as a 500, and the log
            log.exception("emulator failed on %s", op)
            self._send_error(ApiError("InternalServerException", f"emulator bug: {exc}"), rid, rec)
        finally:
            self._close_record()

    def _serve(
        self,
        emu: EmulatorServer,
        cfg: EmulatorConfig,
        op: str,
        ident: str | None,
        query: dict[str, str],
        rec: RequestRecord,
        rid: str,
        started: float,
    ) -> None:
        raw = self._read_body(cfg.max_body_bytes if op == "InvokeModel" else None)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
                rec.body = summarize_body(body, cfg.record_text_preview_chars)
            except ValueError:
                rec.body = f"<{len(raw)} bytes, not JSON>"
        if op == "StartAsyncInvoke" and isinstance(body, dict):
            rec.model_id = body.get("modelId")
        outcome = emu._faults.next() if op in cfg.fault_operations else Outcome()
        if outcome.code != "ok":
            rec.injected = outcome.code
        if outcome.delay_ms > 0:
            time.sleep(outcome.delay_ms / 1000.0)
        if outcome.code == DROPPED_CONNECTION:
            rec.error_code = DROPPED_CONNECTION
            raise _Dropped()
        if outcome.code in ERROR_STATUS:
            raise injected(outcome.code, outcome.message, rec.model_id)

        if op == "InvokeModel":
            assert ident is not None
            payload, headers = self._invoke(emu, ident, raw, body, rec)
        elif op == "StartAsyncInvoke":
            if not isinstance(body, dict):
                raise validation("Malformed request: body is not a JSON object")
            model = emu.resolve_model(str(body.get("modelId", "")))
            arn = emu._jobs.start(body, model, fail=outcome.code == ASYNC_JOB_FAILURE)
            payload, headers = json.dumps({"invocationArn": arn}).encode(), {}
        elif op == "GetAsyncInvoke":
            assert ident is not None
            payload, headers = json.dumps(emu._jobs.get(ident)).encode(), {}
        else:
            payload, headers = json.dumps(emu._jobs.list(query)).encode(), {}

        if outcome.code == MALFORMED_BODY:
            # Cut mid-document: the status says success, the JSON does not parse.
            payload = payload[: max(1, len(payload) // 2)]
        headers["X-Amzn-Bedrock-Invocation-Latency"] = str(
            int((time.perf_counter() - started) * 1000.0)
        )
        rec.status = 200
        self._send(200, payload, rid, headers=headers)

    def _invoke(
        self, emu: EmulatorServer, model_id: str, raw: bytes, body: Any, rec: RequestRecord
    ) -> tuple[bytes, dict[str, str]]:
        emu.resolve_model(model_id)
        emu._quotas.take_request()
        if body is None:
            raise validation("Malformed input request: the body is not valid JSON")
        req = parse_model_input(body, expect_task=SINGLE)
        rec.modality = req.kind
        prepared = emu._engine.prepare(req)
        rec.tokens = prepared.tokens
        emu._quotas.take_tokens(prepared.tokens)
        embeddings = emu._engine.embed(prepared)
        delay = emu._latency_s(req.kind)
        if delay > 0:
            time.sleep(delay)
        headers: dict[str, str] = {}
        if req.kind == "text":
            headers["X-Amzn-Bedrock-Input-Token-Count"] = str(prepared.tokens)
        return json.dumps({"embeddings": embeddings}).encode(), headers

    # -- /_emulator/ -------------------------------------------------------------------------

    def _control(self, method: str, segs: list[str]) -> None:
        emu = self.server.emulator
        rid = str(uuid.uuid4())
        raw = self._read_body(None)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self._send(400, json.dumps({"message": "body is not JSON"}).encode(), rid)
            return
        name = segs[0] if segs else ""
        try:
            if method == "GET" and name == "health":
                out: Any = {"ok": True}
            elif method == "GET" and name == "stats":
                out = emu.stats()
            elif method == "GET" and name == "requests":
                out = [r.to_dict() for r in emu.requests]
            elif method == "GET" and name == "config":
                out = dataclasses.asdict(emu.config)
            elif method == "POST" and name == "reset":
                emu.reset()
                out = {"ok": True}
            elif method == "POST" and name == "config":
                if not isinstance(body, dict):
                    raise ValueError("config body must be a JSON object")
                out = dataclasses.asdict(emu.configure(body))
            elif method == "POST" and name == "script":
                outcomes = body.get("outcomes") if isinstance(body, dict) else body
                if not isinstance(outcomes, list):
                    raise ValueError('script body must be {"outcomes": [...]} or a list')
                if isinstance(body, dict) and body.get("replace"):
                    emu._faults.clear_script()
                out = {"pending": emu.script(outcomes)}
            else:
                self._send(
                    404, json.dumps({"message": f"no control {method} {name}"}).encode(), rid
                )
                return
        except (ValueError, TypeError) as exc:
            self._send(400, json.dumps({"message": str(exc)}).encode(), rid)
            return
        self._send(200, json.dumps(out).encode(), rid)
