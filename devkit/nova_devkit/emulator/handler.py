"""The HTTP side: routing of the service's REST paths, and one request handled end to end.

:func:`route` maps a method and path to an operation. :class:`RequestHandler` reads the body,
records the request, applies scripted or random faults, runs the operation on the
:class:`~nova_devkit.emulator.server.EmulatorServer` it belongs to and answers with the
service's wire shapes; paths under ``/_emulator/`` go to the control plane.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from nova_devkit.emulator.control import control_request
from nova_devkit.emulator.errors import (
    ASYNC_JOB_FAILURE,
    DROPPED_CONNECTION,
    ERROR_STATUS,
    MALFORMED_BODY,
    NAN_VECTOR,
    OTHER_VECTORS,
    WRONG_DIMENSION,
    ApiError,
    injected,
    validation,
)
from nova_devkit.emulator.faults import Outcome
from nova_devkit.emulator.recorder import RequestRecord, summarize_body
from nova_devkit.emulator.validate import SINGLE, parse_model_input

if TYPE_CHECKING:
    from nova_devkit.emulator.config import EmulatorConfig
    from nova_devkit.emulator.server import EmulatorServer

log = logging.getLogger(__name__)


def route(method: str, segs: list[str]) -> tuple[str, str | None] | None:
    """(operation, model id or invocation ARN) of a request, from its *raw* path segments (the
    model id and the ARN arrive percent-encoded, %2F for "/"); None: no such operation."""
    if method == "POST" and len(segs) == 3 and segs[0] == "model" and segs[2] == "invoke":
        return "InvokeModel", unquote(segs[1])
    if method == "POST" and segs == ["async-invoke"]:
        return "StartAsyncInvoke", None
    if method == "GET" and segs == ["async-invoke"]:
        return "ListAsyncInvokes", None
    if method == "GET" and len(segs) == 2 and segs[0] == "async-invoke":
        return "GetAsyncInvoke", unquote(segs[1])
    # The control plane's batch inference API (botocore's "bedrock" service model).
    if method == "POST" and segs == ["model-invocation-job"]:
        return "CreateModelInvocationJob", None
    if method == "GET" and segs == ["model-invocation-jobs"]:
        return "ListModelInvocationJobs", None
    if method == "GET" and len(segs) == 2 and segs[0] == "model-invocation-job":
        return "GetModelInvocationJob", unquote(segs[1])
    if (
        method == "POST"
        and len(segs) == 3
        and segs[0] == "model-invocation-job"
        and segs[2] == "stop"
    ):
        return "StopModelInvocationJob", unquote(segs[1])
    return None


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server whose handlers serve ``emulator``."""

    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog (socketserver's default is 5): two embed actors open up to 64
    # connections each at once, and connects beyond a full backlog wait for the client's SYN
    # retries, or fail as attempts that never reach the endpoint's records.
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], emulator: EmulatorServer) -> None:
        self.emulator = emulator
        super().__init__(addr, RequestHandler)


def _spoil_vectors(payload: bytes, how: str) -> bytes:
    """An InvokeModel answer whose vectors are wrong in the way ``how`` names."""
    doc = json.loads(payload)
    for item in doc.get("embeddings", []):
        vec = item["embedding"]
        if how == WRONG_DIMENSION:
            item["embedding"] = vec[:-1]
        else:
            vec[0] = float("nan")
    return json.dumps(doc).encode()


class _Dropped(Exception):
    """The scripted fault: close the socket without answering."""


class RequestHandler(BaseHTTPRequestHandler):
    """One connection's requests (HTTP/1.1 keep-alive)."""

    server: EmulatorHTTPServer
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: the headers and the body go out as two writes; with Nagle's algorithm the
    # body waits for the client's delayed ACK of the headers (~40 ms on Linux) on every answer
    # a client waits for (measured: 48.6 ms per sequential InvokeModel call, 2.2 ms without).
    disable_nagle_algorithm = True
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
        length = self._declared_length()
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
            emu = self.server.emulator
            emu.recorder.end(rec, emu.cfg.max_recorded_requests)

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

    def _declared_length(self) -> int:
        """The body's declared length (``_admit`` has checked it)."""
        return int(self.headers.get("Content-Length") or 0)

    def _admit(self) -> bool:
        """Refuse, without reading it, a body declared longer than ``max_request_bytes`` (413)
        or a length that is not a number (400); the connection is closed after the answer."""
        raw = self.headers.get("Content-Length")
        limit = self.server.emulator.cfg.max_request_bytes
        if self.headers.get("Transfer-Encoding"):
            status, message = 411, "chunked request bodies are not accepted: send Content-Length"
        elif raw is not None and not raw.strip().isdigit():
            status, message = 400, f"bad Content-Length {raw!r}"
        elif raw is not None and int(raw) > limit:
            status, message = (
                413,
                (
                    f"request body of {int(raw)} bytes is over the {limit}-byte limit "
                    "(emulator.max_request_bytes)"
                ),
            )
        else:
            return True
        self.close_connection = True
        body = json.dumps({"message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        return False

    def _dispatch(self, method: str) -> None:
        if not self._admit():
            return
        parts = urlsplit(self.path)
        segs = [s for s in parts.path.split("/") if s]
        if segs and segs[0] == "_emulator":
            self._control(method, segs[1:])
            return
        found = route(method, segs)
        if found is None:
            self._read_body(None)
            err = ApiError("UnknownOperationException", "Unknown operation.", status=404)
            self._send_error(err, str(uuid.uuid4()), None)
            return
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self._operation(method, found[0], found[1], query)

    def _operation(self, method: str, op: str, ident: str | None, query: dict[str, str]) -> None:
        emu = self.server.emulator
        cfg = emu.cfg
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
        emu.recorder.begin(rec)
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
        outcome = emu.faults.next() if op in cfg.fault_operations else Outcome()
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
            payload, headers = self._invoke(emu, ident, body, rec, outcome.code == OTHER_VECTORS)
            if outcome.code in (WRONG_DIMENSION, NAN_VECTOR):
                payload = _spoil_vectors(payload, outcome.code)
        elif op == "StartAsyncInvoke":
            if not isinstance(body, dict):
                raise validation("Malformed request: body is not a JSON object")
            model = emu.resolve_model(str(body.get("modelId", "")))
            arn = emu.jobs.start(body, model, fail=outcome.code == ASYNC_JOB_FAILURE)
            payload, headers = json.dumps({"invocationArn": arn}).encode(), {}
        elif op == "GetAsyncInvoke":
            assert ident is not None
            payload, headers = json.dumps(emu.jobs.get(ident)).encode(), {}
        elif op == "CreateModelInvocationJob":
            if isinstance(body, dict):
                rec.model_id = body.get("modelId")
            payload, headers = json.dumps(emu.batch.create(body)).encode(), {}
        elif op == "GetModelInvocationJob":
            assert ident is not None
            payload, headers = json.dumps(emu.batch.get(ident)).encode(), {}
        elif op == "StopModelInvocationJob":
            assert ident is not None
            payload, headers = json.dumps(emu.batch.stop(ident)).encode(), {}
        elif op == "ListModelInvocationJobs":
            payload, headers = json.dumps(emu.batch.list_jobs(query)).encode(), {}
        else:
            payload, headers = json.dumps(emu.jobs.list(query)).encode(), {}

        if outcome.code == MALFORMED_BODY:
            # Cut mid-document: the status says success, the JSON does not parse.
            payload = payload[: max(1, len(payload) // 2)]
        headers["X-Amzn-Bedrock-Invocation-Latency"] = str(
            int((time.perf_counter() - started) * 1000.0)
        )
        rec.status = 200
        self._send(200, payload, rid, headers=headers)

    def _invoke(
        self, emu: EmulatorServer, model_id: str, body: Any, rec: RequestRecord, other: bool
    ) -> tuple[bytes, dict[str, str]]:
        emu.resolve_model(model_id)
        emu.quotas.take_request()
        if body is None:
            raise validation("Malformed input request: the body is not valid JSON")
        req = parse_model_input(body, expect_task=SINGLE)
        rec.modality = req.kind
        prepared = emu.engine.prepare(req)
        rec.tokens = prepared.tokens
        emu.quotas.take_tokens(prepared.tokens)
        embeddings = emu.engine.embed(prepared, other=other)
        delay = emu.latency_s(req.kind)
        if delay > 0:
            time.sleep(delay)
        headers: dict[str, str] = {}
        if req.kind == "text":
            headers["X-Amzn-Bedrock-Input-Token-Count"] = str(prepared.tokens)
        # orjson: ~20x json.dumps on 1,024-3,072 floats, same shortest-repr numbers; the endpoint
        # shares the machine's cores with the job in benchmarks.
        return orjson.dumps({"embeddings": embeddings}), headers

    # -- /_emulator/ -------------------------------------------------------------------------

    def _control(self, method: str, segs: list[str]) -> None:
        rid = str(uuid.uuid4())
        raw = self._read_body(None)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self._send(400, json.dumps({"message": "body is not JSON"}).encode(), rid)
            return
        status, out = control_request(self.server.emulator, method, segs[0] if segs else "", body)
        self._send(status, json.dumps(out).encode(), rid)
