"""Start the local endpoints together: moto's S3 server, then the Bedrock emulator using it.

``local_endpoints`` sets nothing global (no environment variables, no patched botocore): callers
pass ``Endpoints.bedrock_url`` / ``Endpoints.s3_url`` to their clients explicitly.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from nova_devkit.emulator.config import EmulatorConfig, bind_or_explain, check_emulator_config
from nova_devkit.emulator.server import EmulatorServer

# Dummy credentials for clients of the local endpoints (they are never checked).
DUMMY_ACCESS_KEY = "testing"
DUMMY_SECRET_KEY = "testing"
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
# Variables that would make boto3 use something other than the dummy keys.
CLEARED_AWS_ENV = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
)


def use_dummy_credentials(environ: MutableMapping[str, str] | None = None) -> None:
    """Put dummy AWS credentials in the environment (default: this process's, which Ray workers
    started afterwards inherit). For talking to the local endpoints only: never real AWS."""
    env = os.environ if environ is None else environ
    env.update(DUMMY_AWS_ENV)
    for name in CLEARED_AWS_ENV:
        env.pop(name, None)


@dataclass
class Endpoints:
    """The running local endpoints: URLs and the emulator object (for stats and control)."""

    bedrock_url: str
    s3_url: str
    emulator: EmulatorServer
    region: str = "us-east-1"

    def bedrock_runtime_client(self, max_attempts: int = 1, read_timeout_s: float = 60.0) -> Any:
        """A boto3 ``bedrock-runtime`` client for the emulator (dummy credentials; botocore
        retries limited to ``max_attempts`` so that tests see every error)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "bedrock-runtime",
            endpoint_url=self.bedrock_url,
            region_name=self.region,
            aws_access_key_id=DUMMY_ACCESS_KEY,
            aws_secret_access_key=DUMMY_SECRET_KEY,
            config=Config(
                retries={"total_max_attempts": max_attempts}, read_timeout=read_timeout_s
            ),
        )

    def pipeline_overrides(self) -> list[str]:
        """Hydra overrides that point a pipeline job at these endpoints."""
        return [
            "bedrock=emulator",
            f"bedrock.endpoint_url={self.bedrock_url}",
            f"bedrock.s3_endpoint_url={self.s3_url}",
            f"bedrock.region={self.region}",
        ]

    def s3_client(self) -> Any:
        """A boto3 S3 client for the local S3 (dummy credentials)."""
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.s3_url,
            region_name=self.region,
            aws_access_key_id=DUMMY_ACCESS_KEY,
            aws_secret_access_key=DUMMY_SECRET_KEY,
        )


class S3Server:
    """moto's S3 in server mode, on a socket bound in the caller's thread.

    moto's own ``ThreadedMotoServer`` binds in its background thread: a port in use ends that
    thread and leaves ``start()`` waiting forever (and a stop signal unanswered). Here the bind
    happens in :meth:`start`, which raises :class:`~pipelines.core.errors.ConfigError` naming
    ``emulator.s3_port`` instead.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> S3Server:
        from moto.moto_server.threaded_moto_server import MotoRequestHandler
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        family, kind, proto, _, address = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM
        )[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            bind_or_explain(lambda: sock.bind(address), "emulator.s3_port", self.host, self.port)
            sock.listen(128)
            app = DomainDispatcherApplication(create_backend_app)

            class Handler(MotoRequestHandler):
                # TCP_NODELAY: werkzeug writes the headers and the body separately, and with
                # Nagle's algorithm the body would wait ~40 ms for the client's delayed ACK on
                # every answer (see nova_devkit.emulator.handler.RequestHandler).
                disable_nagle_algorithm = True

            # werkzeug serves a duplicate of the bound socket's descriptor.
            self._server = make_server(
                self.host,
                self.port,
                app,
                threaded=True,
                request_handler=Handler,
                fd=sock.fileno(),
            )
        thread = threading.Thread(target=self._server.serve_forever, name="s3", daemon=True)
        thread.start()
        self._thread = thread
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            if thread is not None:
                server.shutdown()  # waits for serve_forever: only a server that serves
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)


@contextlib.contextmanager
def local_endpoints(cfg: EmulatorConfig | None = None) -> Iterator[Endpoints]:
    """Run moto S3 (on ``cfg.s3_port``, 0 = free port) and the emulator (``cfg.port``) on
    ``cfg.host``; both stop when the block exits (also when it is interrupted while starting).

    Raises :class:`~pipelines.core.errors.ConfigError` before anything listens for a host that
    is not loopback (unless ``allow_remote``), and naming the port's key when a port is in use.
    """
    cfg = cfg if cfg is not None else EmulatorConfig()
    check_emulator_config(cfg)
    s3 = S3Server(cfg.host, cfg.s3_port)
    try:
        s3.start()
        with EmulatorServer(cfg, s3_endpoint_url=s3.url) as emulator:
            yield Endpoints(
                bedrock_url=emulator.url, s3_url=s3.url, emulator=emulator, region=cfg.region
            )
    finally:
        s3.stop()
