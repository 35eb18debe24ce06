"""The local Bedrock Runtime-compatible HTTP endpoint: its state and lifecycle.

:class:`EmulatorServer` serves ``InvokeModel``, ``StartAsyncInvoke``, ``GetAsyncInvoke`` and
``ListAsyncInvokes``, and the control plane's batch inference API
(``CreateModelInvocationJob``, ``GetModelInvocationJob``, ``ListModelInvocationJobs``,
``StopModelInvocationJob``) with the service's wire shapes on loopback, so unmodified boto3 (given
``endpoint_url``) runs its real signing, serialisation, retry and error-parsing code against it.
It also enforces quotas, adds latency, injects faults and records every request; all of that is
controlled from Python (methods on the server) or over HTTP under ``/_emulator/``
(:mod:`nova_devkit.emulator.control`). Requests are handled in :mod:`nova_devkit.emulator.handler`.

It is not the model: see ``docs/emulator.md``.
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from nova_devkit.emulator.async_jobs import AsyncJobStore
from nova_devkit.emulator.batch_jobs import BatchJobStore
from nova_devkit.emulator.config import EmulatorConfig, bind_or_explain, check_emulator_config
from nova_devkit.emulator.control import merge_config
from nova_devkit.emulator.engine import EmbeddingEngine
from nova_devkit.emulator.errors import validation
from nova_devkit.emulator.faults import FaultInjector, Outcome, check_rates
from nova_devkit.emulator.handler import EmulatorHTTPServer
from nova_devkit.emulator.quotas import QuotaEnforcer
from nova_devkit.emulator.recorder import RequestRecord, RequestRecorder
from nova_devkit.emulator.s3 import EmulatorS3


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
        self._lock = threading.Lock()
        self.s3 = EmulatorS3(s3_endpoint_url, lambda: self._cfg.region)
        self.quotas = QuotaEnforcer(self._cfg.quota)
        self.faults = FaultInjector(self._cfg.faults, self._cfg.seed)
        self._latency_rng = random.Random(self._cfg.seed + 1)
        self.engine = EmbeddingEngine(lambda: self._cfg, self.s3.read)
        self.jobs = AsyncJobStore(lambda: self._cfg, self.engine, self.s3.write, self.model_arn)
        self.batch = BatchJobStore(lambda: self._cfg, self.engine, self.s3, self.resolve_model)
        self.recorder = RequestRecorder()
        self._httpd: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        """Listen on ``host:port`` (port 0 picks a free one) and serve in a daemon thread.

        Raises :class:`~pipelines.core.errors.ConfigError` naming ``emulator.host`` for an
        address that is not loopback (unless ``allow_remote``) and ``emulator.port`` when the
        port is in use, before anything listens.
        """
        if self._httpd is not None:
            return self
        check_emulator_config(self._cfg)
        self._httpd = bind_or_explain(
            lambda: EmulatorHTTPServer((self._cfg.host, self._cfg.port), self),
            "emulator.port",
            self._cfg.host,
            self._cfg.port,
        )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="bedrock-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (also after a start that was interrupted)."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            if thread is not None:
                # shutdown() waits for serve_forever: only ask a server that is serving.
                httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self.jobs.shutdown()

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

    @property
    def s3_endpoint_url(self) -> str | None:
        """The S3 endpoint the emulator reads sources from and writes async outputs to."""
        return self.s3.endpoint_url

    # -- control -----------------------------------------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        """A copy of the configuration in force."""
        return copy.deepcopy(self._cfg)

    @property
    def cfg(self) -> EmulatorConfig:
        """The configuration in force itself, for the request handler: read it, never change it
        (use :meth:`configure`)."""
        return self._cfg

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
        self.quotas.configure(new.quota)
        self.faults.configure(new.faults, new.seed if reseed else None)
        if reseed:
            self._latency_rng = random.Random(new.seed + 1)

    def script(self, outcomes: Iterable[str | Mapping[str, Any] | Outcome]) -> int:
        """Queue outcomes for the next requests of ``fault_operations`` (before random faults):
        ``"ok"``, an error code, ``"DroppedConnection"``, ``"MalformedBody"``,
        ``"AsyncJobFailure"`` or ``{"code", "message", "delay_ms"}``. Returns the queue length."""
        return self.faults.script(outcomes)

    def reset(self) -> None:
        """Back to the start-up config; clear stats, records, scripts and async jobs."""
        with self._lock:
            self.faults.clear_script()
            self._apply(copy.deepcopy(self._initial), reseed=True)
            self.recorder.reset()
        self.jobs.reset()
        self.batch.reset()

    @property
    def requests(self) -> list[RequestRecord]:
        """The recorded service requests, oldest first (a copy)."""
        return self.recorder.records()

    def stats(self) -> dict[str, Any]:
        """Counters since the last reset."""
        out = self.recorder.stats()
        out["script_pending"] = self.faults.pending
        out["async_jobs"] = self.jobs.counts()
        out["batch_jobs"] = self.batch.counts()
        return out

    # -- used by the engine, the async jobs and the handler ------------------------------------

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

    def latency_s(self, kind: str | None) -> float:
        """The delay to add to an answer for modality ``kind``: fixed + jitter + per modality."""
        cfg = self._cfg
        with self._lock:
            jitter = self._latency_rng.uniform(0.0, cfg.jitter_ms) if cfg.jitter_ms > 0 else 0.0
        extra = float(getattr(cfg.latency, kind, 0.0)) if kind else 0.0
        return max(0.0, cfg.latency_ms + jitter + extra) / 1000.0
