"""The emulator's typed configuration, and its Hydra ConfigStore registration.

``nova_devkit/conf/emulator.yaml`` (``python -m nova_devkit.emulator``) lists ``emulator_schema``
first in its defaults, so every key under ``emulator:`` (YAML or command line) is checked against
:class:`EmulatorConfig`. ``faults`` is a typed ``dict[str, float]``, so
``emulator.faults.ThrottlingException=0.1`` works whether or not the YAML lists the code.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from pipelines.config.schema import NOVA_MME_MODEL_ID

if TYPE_CHECKING:
    from omegaconf import DictConfig

T = TypeVar("T")


@dataclass
class EmulatorQuotaConfig:
    """Quotas the local endpoint enforces with ThrottlingException (0 = unlimited)."""

    requests_per_minute: float = 0.0
    tokens_per_minute: float = 0.0
    # Bucket depth in seconds of quota: how much burst is tolerated.
    burst_seconds: float = 2.0


@dataclass
class EmulatorLatencyConfig:
    """Per-modality latency (milliseconds) added to the fixed ``latency_ms``."""

    text: float = 0.0
    image: float = 0.0
    audio: float = 0.0
    video: float = 0.0


@dataclass
class EmulatorConfig:
    """The local Bedrock Runtime-compatible endpoint (and its moto S3)."""

    host: str = "127.0.0.1"
    port: int = 0
    s3_port: int = 0
    # The endpoint and its control API (/_emulator/) have no authentication: a host that is not
    # loopback is refused unless this is set.
    allow_remote: bool = False
    # Any request declaring a longer body is answered 413 without reading it (all operations,
    # the control API included); InvokeModel's own, service-like limit is max_body_bytes.
    max_request_bytes: int = 64 * 1024 * 1024
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    latency: EmulatorLatencyConfig = field(default_factory=EmulatorLatencyConfig)
    quota: EmulatorQuotaConfig = field(default_factory=EmulatorQuotaConfig)
    # Fault rates per error code (e.g. ThrottlingException: 0.1), plus "DroppedConnection" and
    # "MalformedBody".
    faults: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    region: str = "us-east-1"
    account_id: str = "123456789012"
    # Seconds an async job stays InProgress at least (lets pollers see the state).
    async_min_duration_s: float = 0.2
    # Model ids served (plain ids; the foundation-model ARN form of each is accepted too).
    model_ids: list[str] = field(default_factory=lambda: [NOVA_MME_MODEL_ID])
    # Inline / S3 text limit for InvokeModel in characters (documented 8,192; the service
    # reportedly accepts 50,000: uncertain, hence configurable).
    text_max_chars: int = 50_000
    # Whole InvokeModel request body, after base64 ("25 MB": MiB assumed).
    max_body_bytes: int = 25 * 1024 * 1024
    # Sync audio/video limit on *decoded* duration, plus slack for codec padding (an MP3 cut at
    # exactly 30 s decodes a few ms longer); the service's own tolerance is unknown.
    max_media_seconds: float = 30.0
    media_duration_tolerance_s: float = 0.1
    image_max_pixels: int = 89_478_485
    # Reject media whose bytes are not the declared format (png declared, jpeg sent).
    check_media_format: bool = True
    # Video frames sampled per second for the content features.
    video_sample_fps: float = 2.0
    # False: an image's vector is drawn from a hash of its bytes instead of its decoded content
    # (only its header is read: format, size and pixel limit are still checked). For throughput
    # benchmarks, where the endpoint shares the machine with the pipeline it serves and decoding
    # every image would cost as much CPU as the pipeline's own rendering. Search quality tests
    # need the default.
    image_content_features: bool = True
    # Operations that draw injected faults and consume scripted outcomes.
    fault_operations: list[str] = field(default_factory=lambda: ["InvokeModel", "StartAsyncInvoke"])
    # Async worker threads, in-progress job limit (0 = none; over it ServiceQuotaExceeded), and
    # the error code GetAsyncInvoke answers for an unknown ARN (the service's is undocumented).
    async_workers: int = 2
    async_max_in_progress: int = 0
    async_not_found_code: str = "ValidationException"
    # Batch inference (CreateModelInvocationJob): seconds from submission to the end of a job,
    # the service's quotas (records per job, jobs in progress; 0 = no limit), scripted per-record
    # errors (a record whose JSON line contains the key fails with "<errorCode>:<message>", the
    # code an HTTP status as the service writes it, e.g. "400:bad input"), how jobs end ("auto":
    # Completed; "PartiallyCompleted" after batch_partial_fraction of the records; "Failed" or
    # "Expired" with no output) and whether output lines come in another order than the input's.
    batch_duration_s: float = 1.0
    batch_min_records: int = 100
    batch_max_records: int = 50_000
    batch_max_in_progress: int = 0
    batch_record_errors: dict[str, str] = field(default_factory=dict)
    batch_end_status: str = "auto"
    batch_partial_fraction: float = 0.5
    batch_shuffle_output: bool = False
    # Buckets ``python -m nova_devkit.emulator`` creates on its S3 when it starts (e.g. the
    # staging bucket of bedrock=emulator: nova-staging).
    create_buckets: list[str] = field(default_factory=list)
    # Request records kept for inspection, and how much of a text value they keep.
    max_recorded_requests: int = 10_000
    record_text_preview_chars: int = 200


@dataclass
class EmulatorJobConfig:
    """The whole configuration of ``python -m nova_devkit.emulator``."""

    emulator: EmulatorConfig = field(default_factory=EmulatorConfig)


_REGISTERED = False


def register_emulator_configs() -> None:
    """Idempotent: register ``emulator_schema`` with Hydra's ConfigStore."""
    global _REGISTERED
    if _REGISTERED:
        return
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="emulator_schema", node=EmulatorJobConfig)
    _REGISTERED = True


def check_emulator_config(cfg: EmulatorConfig) -> None:
    """Refuse what would expose the endpoint or leave it unbounded; :class:`ConfigError` names
    the key. Called before anything listens."""
    from pipelines.core.credentials import is_loopback_host
    from pipelines.core.errors import ConfigError

    if not is_loopback_host(cfg.host) and not cfg.allow_remote:
        raise ConfigError(
            "emulator.host",
            f"{cfg.host!r} is not a loopback address: the endpoint and its control API "
            "(/_emulator/: reset, config, scripted faults) have no authentication; bind "
            "127.0.0.1, or set emulator.allow_remote=true to expose them knowingly",
        )
    for key in ("port", "s3_port"):
        value = getattr(cfg, key)
        if not 0 <= value <= 65535:
            raise ConfigError(
                f"emulator.{key}", f"must be in 0..65535 (0: any free port), got {value}"
            )
    if cfg.max_request_bytes < 1:
        raise ConfigError(
            "emulator.max_request_bytes", f"must be >= 1, got {cfg.max_request_bytes}"
        )


_BIND_ERRORS = {
    errno.EADDRINUSE: "is in use (another emulator or program listens there)",
    errno.EACCES: "needs privileges this process does not have",
    errno.EADDRNOTAVAIL: "is not an address of this machine",
}


def bind_or_explain(bind: Callable[[], T], key: str, host: str, port: int) -> T:
    """``bind()``, or a :class:`ConfigError` naming ``key`` when the address cannot be taken
    (in use, privileged, not this machine's)."""
    from pipelines.core.errors import ConfigError

    try:
        return bind()
    except OSError as exc:
        reason = _BIND_ERRORS.get(exc.errno or 0)
        if reason is None:
            raise
        raise ConfigError(
            key,
            f"{host}:{port} {reason}; choose another port with {key}=<port> (0: any free one) "
            "or stop the program that holds it",
        ) from exc


def to_emulator_config(node: DictConfig) -> EmulatorConfig:
    """The typed ``emulator`` node as a plain dataclass (no OmegaConf objects inside)."""
    from omegaconf import OmegaConf

    obj = OmegaConf.to_object(node)
    assert isinstance(obj, EmulatorConfig)
    return obj
