"""A fault-injecting proxy in front of the local S3 (moto's server), for tests of S3 outages.

``S3FaultProxy(upstream_url)`` listens on loopback and forwards every request to ``upstream_url``
unchanged, until told otherwise with :meth:`S3FaultProxy.set`:

- ``mode="AccessDenied"``: answer 403 with S3's XML error (``AccessDenied``), as a bucket policy
  or a revoked role would;
- ``mode="Outage"``: close the connection without answering (botocore retries, then raises a
  connection error), as an unreachable endpoint would;
- ``mode="pass"``: forward (the default).

``after`` lets that many more requests through first (a fault *mid-run*), and ``keys`` limits the
fault to object keys containing one of the strings (one object refused, the rest served).
``requests`` counts what reached the proxy, ``faulted`` what it refused.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

ACCESS_DENIED = "AccessDenied"
OUTAGE = "Outage"
PASS = "pass"

_DENIED_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message><RequestId>fault-proxy</RequestId></Error>"
)


class S3FaultProxy:
    """The proxy; use as a context manager (``url`` is where clients point)."""

    def __init__(self, upstream_url: str, host: str = "127.0.0.1") -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self.mode = PASS
        self.after = 0
        self.keys: tuple[str, ...] = ()
        self.requests = 0
        self.faulted = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are two writes: without TCP_NODELAY the body waits ~40 ms for
            # the client's delayed ACK (see nova_devkit.emulator.handler.RequestHandler).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._decide(self.path)
                if fault == OUTAGE:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == ACCESS_DENIED:
                    self.send_response(403)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_DENIED_XML)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(_DENIED_XML)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items()}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server((host, 0), Handler)
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _decide(self, path: str) -> str:
        with self._lock:
            self.requests += 1
            if self.mode == PASS:
                return PASS
            if self.keys and not any(k in path for k in self.keys):
                return PASS
            if self.after > 0:
                self.after -= 1
                return PASS
            self.faulted += 1
            return self.mode

    def set(self, mode: str = PASS, *, after: int = 0, keys: Sequence[str] = ()) -> None:
        """Fault every request (``keys``: those whose path names one) after ``after`` more."""
        if mode not in (PASS, ACCESS_DENIED, OUTAGE):
            raise ValueError(f"unknown S3 fault {mode!r}; known: {[PASS, ACCESS_DENIED, OUTAGE]}")
        with self._lock:
            self.mode, self.after, self.keys = mode, after, tuple(keys)
            self.requests = self.faulted = 0

    def __enter__(self) -> S3FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def s3_fault_proxy(upstream_url: str) -> Iterator[S3FaultProxy]:
    """:class:`S3FaultProxy` in front of ``upstream_url`` for the duration of the block."""
    with S3FaultProxy(upstream_url) as proxy:
        yield proxy
