"""Value checks that types alone cannot express; run before any cluster work.

Every failure is a :class:`~pipelines.core.errors.ConfigError` naming the dotted key, so that a
user can fix the command line without reading code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pipelines.bedrock.enums import DIMENSIONS as API_DIMENSIONS
from pipelines.bedrock.enums import (
    DetailLevel,
    EmbeddingPurpose,
    TruncationMode,
    VideoEmbeddingMode,
)
from pipelines.config.schema import (
    BackfillJobConfig,
    BedrockConfig,
    CollectionSettingsConfig,
    EmbeddingConfig,
    InputsConfig,
    LimitsConfig,
    MigrateJobConfig,
    QdrantConfig,
    ResourcesConfig,
    SegmentationConfig,
    StageResourcesConfig,
)
from pipelines.core.credentials import is_loopback_url
from pipelines.core.errors import ConfigError
from pipelines.modalities import names as modality_names

# The API's enumerations, from the client's request model (one source of truth).
PURPOSES = tuple(p.value for p in EmbeddingPurpose)
DIMENSIONS = API_DIMENSIONS
DETAIL_LEVELS = tuple(d.value for d in DetailLevel)
VIDEO_MODES = tuple(m.value for m in VideoEmbeddingMode)
TRUNCATION_MODES = tuple(t.value for t in TruncationMode)
# usecase.partial_assets: all-or-nothing assets, or their good segments kept.
PARTIAL_ASSETS = ("drop", "keep")


def _one_of(key: str, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        raise ConfigError(key, f"{value!r} is not one of {list(allowed)}")


def _positive(key: str, value: float | int, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def validate_embedding(cfg: EmbeddingConfig, prefix: str = "embedding") -> None:
    if not cfg.model_id:
        raise ConfigError(f"{prefix}.model_id", "must not be empty")
    _one_of(f"{prefix}.index_purpose", cfg.index_purpose, PURPOSES)
    _one_of(f"{prefix}.query_purpose", cfg.query_purpose, PURPOSES)
    _one_of(f"{prefix}.dimension", cfg.dimension, DIMENSIONS)
    _one_of(f"{prefix}.image_detail_level", cfg.image_detail_level, DETAIL_LEVELS)
    _one_of(f"{prefix}.document_detail_level", cfg.document_detail_level, DETAIL_LEVELS)
    _one_of(f"{prefix}.video_embedding_mode", cfg.video_embedding_mode, VIDEO_MODES)
    _one_of(f"{prefix}.text_truncation_mode", cfg.text_truncation_mode, TRUNCATION_MODES)


def validate_segmentation(cfg: SegmentationConfig, prefix: str = "segmentation") -> None:
    _one_of(f"{prefix}.mode", cfg.mode, ("local", "service"))
    _one_of(f"{prefix}.pdf_mode", cfg.pdf_mode, ("image", "text", "auto"))
    _one_of(f"{prefix}.audio_format", cfg.audio_format, ("mp3", "wav", "ogg"))
    _one_of(f"{prefix}.video_reencode", cfg.video_reencode, ("auto", "always", "never"))
    _one_of(f"{prefix}.tiff_pages", cfg.tiff_pages, ("first", "all"))
    if not 100 <= cfg.text_max_chars <= 50_000:
        raise ConfigError(
            f"{prefix}.text_max_chars", f"must be in 100..50000, got {cfg.text_max_chars}"
        )
    if not 0 <= cfg.text_overlap_chars < cfg.text_max_chars // 2:
        raise ConfigError(
            f"{prefix}.text_overlap_chars",
            f"must be in 0..text_max_chars/2 ({cfg.text_max_chars // 2}), "
            f"got {cfg.text_overlap_chars}",
        )
    if not 36 <= cfg.pdf_dpi <= 600:
        raise ConfigError(f"{prefix}.pdf_dpi", f"must be in 36..600, got {cfg.pdf_dpi}")
    _positive(f"{prefix}.pdf_max_pixels", cfg.pdf_max_pixels)
    _positive(f"{prefix}.image_max_side", cfg.image_max_side)
    _positive(f"{prefix}.image_max_pixels", cfg.image_max_pixels)
    windows = (
        ("audio_window_s", "audio_overlap_s", cfg.audio_window_s, cfg.audio_overlap_s),
        ("video_window_s", "video_overlap_s", cfg.video_window_s, cfg.video_overlap_s),
    )
    for window_key, overlap_key, window, overlap in windows:
        if not 1.0 <= window <= 30.0:
            raise ConfigError(
                f"{prefix}.{window_key}", f"must be in 1..30 s (sync API limit), got {window}"
            )
        if not 0.0 <= overlap <= window / 2:
            raise ConfigError(
                f"{prefix}.{overlap_key}",
                f"must be in [0, window/2] = [0, {window / 2:g}], got {overlap}",
            )
    if cfg.video_max_height < 16:
        raise ConfigError(
            f"{prefix}.video_max_height", f"must be >= 16 pixels, got {cfg.video_max_height}"
        )
    if not 1 <= cfg.service_duration_s <= 30:
        raise ConfigError(
            f"{prefix}.service_duration_s", f"must be in 1..30, got {cfg.service_duration_s}"
        )
    if not 800 <= cfg.service_max_chars <= 50_000:
        raise ConfigError(
            f"{prefix}.service_max_chars", f"must be in 800..50000, got {cfg.service_max_chars}"
        )


def validate_bedrock(cfg: BedrockConfig, seg: SegmentationConfig | None = None) -> None:
    if not cfg.region:
        raise ConfigError("bedrock.region", "must not be empty")
    for key in ("endpoint_url", "s3_endpoint_url"):
        url = getattr(cfg, key)
        if url is not None and not url.startswith(("http://", "https://")):
            raise ConfigError(f"bedrock.{key}", f"must be an http(s) URL, got {url!r}")
        check_endpoint_transport(
            f"bedrock.{key}", url, "bedrock.allow_insecure_endpoint", cfg.allow_insecure_endpoint
        )
    _positive("bedrock.quota.requests_per_minute", cfg.quota.requests_per_minute)
    _positive("bedrock.quota.guard_timeout_s", cfg.quota.guard_timeout_s)
    _positive("bedrock.quota.tokens_per_minute", cfg.quota.tokens_per_minute)
    _positive("bedrock.quota.async_requests_per_minute", cfg.quota.async_requests_per_minute)
    if cfg.quota.async_max_concurrent_jobs < 1:
        raise ConfigError(
            "bedrock.quota.async_max_concurrent_jobs",
            f"must be >= 1, got {cfg.quota.async_max_concurrent_jobs}",
        )
    if cfg.quota.account is not None and not str(cfg.quota.account).strip():
        raise ConfigError("bedrock.quota.account", "must not be empty (null: found out)")
    if cfg.max_attempts < 1:
        raise ConfigError("bedrock.max_attempts", f"must be >= 1, got {cfg.max_attempts}")
    staging_ok = bool(cfg.s3_staging_uri and cfg.s3_staging_uri.startswith("s3://"))
    if seg is not None and seg.mode == "service" and not staging_ok:
        raise ConfigError(
            "bedrock.s3_staging_uri",
            "segmentation.mode=service needs an s3://bucket/prefix for inputs and outputs",
        )
    validate_batch(cfg, seg, staging_ok)
    if cfg.s3_staging_uri is not None:
        from pipelines.core.io import split_s3_uri

        try:
            split_s3_uri(cfg.s3_staging_uri)
        except ValueError as exc:
            raise ConfigError("bedrock.s3_staging_uri", str(exc)) from exc


BEDROCK_MODES = ("on_demand", "batch")
# The service's pattern for an IAM role ARN (botocore's bedrock model, RoleArn).
_ROLE_ARN = r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+"


def validate_batch(cfg: BedrockConfig, seg: SegmentationConfig | None, staging_ok: bool) -> None:
    """``bedrock.mode`` and, for ``batch``, every ``bedrock.batch.*`` key."""
    import re

    _one_of("bedrock.mode", cfg.mode, BEDROCK_MODES)
    b = cfg.batch
    if cfg.mode != "batch":
        return
    if seg is not None and seg.mode != "local":
        raise ConfigError(
            "bedrock.mode", "batch needs segmentation.mode=local (records are cut segments)"
        )
    if not staging_ok:
        raise ConfigError(
            "bedrock.s3_staging_uri",
            "bedrock.mode=batch needs an s3://bucket/prefix for the job inputs and outputs",
        )
    if not b.role_arn or not re.fullmatch(_ROLE_ARN, b.role_arn):
        raise ConfigError(
            "bedrock.batch.role_arn",
            f"bedrock.mode=batch needs an IAM role ARN (arn:aws:iam::<account>:role/<name>) "
            f"Bedrock can assume; got {b.role_arn!r}",
        )
    for key in ("min_records_per_job", "max_records_per_job", "max_records_per_file"):
        if getattr(b, key) < 1:
            raise ConfigError(f"bedrock.batch.{key}", f"must be >= 1, got {getattr(b, key)}")
    if b.min_records_per_job > b.max_records_per_job:
        raise ConfigError(
            "bedrock.batch.min_records_per_job",
            f"{b.min_records_per_job} is over bedrock.batch.max_records_per_job "
            f"({b.max_records_per_job})",
        )
    if b.max_bytes_per_file < 1024 * 1024:
        raise ConfigError(
            "bedrock.batch.max_bytes_per_file", f"must be >= 1 MiB, got {b.max_bytes_per_file}"
        )
    if not 24 <= b.timeout_hours <= 168:
        raise ConfigError(
            "bedrock.batch.timeout_hours", f"must be in 24..168, got {b.timeout_hours}"
        )
    _positive("bedrock.batch.wait_s", b.wait_s, allow_zero=True)
    _positive("bedrock.batch.poll_min_s", b.poll_min_s)
    if b.poll_max_s < b.poll_min_s:
        raise ConfigError("bedrock.batch.poll_max_s", "must be >= bedrock.batch.poll_min_s")
    _one_of("bedrock.batch.on_failed_records", b.on_failed_records, ("dead_letter", "on_demand"))
    if cfg.quota.batch_max_concurrent_jobs < 1:
        raise ConfigError(
            "bedrock.quota.batch_max_concurrent_jobs",
            f"must be >= 1, got {cfg.quota.batch_max_concurrent_jobs}",
        )


def _in_clear_to_another_host(url: str | None) -> bool:
    return bool(url) and str(url).lower().startswith("http://") and not is_loopback_url(url)


def check_endpoint_transport(key: str, url: str | None, allow_key: str, allowed: bool) -> None:
    """Refuse an AWS endpoint ``url`` over ``http://`` to a host that is not this machine unless
    ``allowed`` (the setting ``allow_key``). Only loopback endpoints get dummy credentials, so any
    other host would get real ones, session tokens included, and every input, in clear."""
    if _in_clear_to_another_host(url) and not allowed:
        raise ConfigError(
            key,
            f"{url} is http:// to a host that is not this machine: the AWS session token and "
            f"every input would travel in clear; use https://, or set {allow_key}=true if that "
            "network is trusted",
        )


def check_qdrant_transport(cfg: QdrantConfig, environ: Mapping[str, str] | None = None) -> None:
    """Refuse to send ``QDRANT_API_KEY`` over ``http://`` to a host that is not this machine,
    unless ``qdrant.allow_insecure_api_key`` is set. The key itself is never in the message."""
    env = os.environ if environ is None else environ
    if (
        env.get("QDRANT_API_KEY")
        and _in_clear_to_another_host(cfg.url)
        and not cfg.allow_insecure_api_key
    ):
        raise ConfigError(
            "qdrant.url",
            f"{cfg.url} is http:// to a host that is not this machine and QDRANT_API_KEY is set: "
            "the key would travel in clear; use https://, or set "
            "qdrant.allow_insecure_api_key=true if that network is trusted",
        )


def validate_qdrant(cfg: QdrantConfig) -> None:
    if (cfg.url is None) == (cfg.path is None):
        raise ConfigError(
            "qdrant.url", "set exactly one of qdrant.url (server) or qdrant.path (embedded)"
        )
    check_qdrant_transport(cfg)
    if not cfg.collection:
        raise ConfigError("qdrant.collection", "must not be empty")
    if not 1 <= cfg.batch_size <= 1000:
        raise ConfigError("qdrant.batch_size", f"must be in 1..1000, got {cfg.batch_size}")
    if not cfg.timeout_s > 0:
        raise ConfigError("qdrant.timeout_s", f"must be > 0, got {cfg.timeout_s!r}")
    validate_collection_settings(cfg.collection_settings)


QUANTIZATIONS = ("none", "scalar", "binary")


def validate_collection_settings(cs: CollectionSettingsConfig) -> None:
    key = "qdrant.collection_settings"
    if cs.quantization not in QUANTIZATIONS:
        raise ConfigError(
            f"{key}.quantization", f"{cs.quantization!r} is not one of {list(QUANTIZATIONS)}"
        )
    if not 0 <= cs.hnsw_m <= 128:
        raise ConfigError(f"{key}.hnsw_m", f"must be in 0..128 (0: no graph), got {cs.hnsw_m}")
    if not 4 <= cs.hnsw_ef_construct <= 4096:
        raise ConfigError(
            f"{key}.hnsw_ef_construct", f"must be in 4..4096, got {cs.hnsw_ef_construct}"
        )
    if not 1.0 <= cs.oversampling <= 16.0:
        raise ConfigError(f"{key}.oversampling", f"must be in 1..16, got {cs.oversampling}")
    for name in ("shard_number", "replication_factor"):
        value = getattr(cs, name)
        if value is not None and value < 1:
            raise ConfigError(f"{key}.{name}", f"must be null or >= 1, got {value}")


def validate_inputs(cfg: InputsConfig, prefix: str = "inputs") -> None:
    """The roots and S3 prefixes a job may read from."""
    for root in cfg.allowed_roots:
        if not root or not root.strip():
            raise ConfigError(f"{prefix}.allowed_roots", "an entry is empty")
        if "://" in root and not root.startswith("file://"):
            raise ConfigError(
                f"{prefix}.allowed_roots",
                f"{root!r} is not a local folder (S3 goes in {prefix}.allowed_s3_prefixes)",
            )
    from pipelines.core.io import split_s3_uri

    for entry in cfg.allowed_s3_prefixes:
        try:
            split_s3_uri(entry)
        except ValueError:
            raise ConfigError(
                f"{prefix}.allowed_s3_prefixes", f"{entry!r} is not an s3://bucket[/prefix]"
            ) from None


def validate_resources(cfg: ResourcesConfig, prefix: str = "resources") -> None:
    """CPUs, concurrency and requests in flight of every stage."""
    for stage in ("decode", "embed", "write"):
        res: StageResourcesConfig = getattr(cfg, stage)
        key = f"{prefix}.{stage}"
        if not res.num_cpus > 0:
            raise ConfigError(f"{key}.num_cpus", f"must be > 0, got {res.num_cpus}")
        if res.concurrency is not None and res.concurrency < 1:
            raise ConfigError(f"{key}.concurrency", f"must be >= 1 or null, got {res.concurrency}")
        if res.max_in_flight < 1:
            raise ConfigError(f"{key}.max_in_flight", f"must be >= 1, got {res.max_in_flight}")
    for stage in ("embed", "write"):
        res = getattr(cfg, stage)
        if res.num_cpus > 1:
            raise ConfigError(
                f"{prefix}.{stage}.num_cpus",
                f"must be in (0, 1]; I/O actors take a fraction of a CPU, got {res.num_cpus}",
            )


def validate_backfill(cfg: BackfillJobConfig) -> None:
    """Every check for ``jobs.backfill``; raises ConfigError naming the first bad key."""
    if not cfg.manifest:
        raise ConfigError("manifest", "required: manifest=<path|file://...|s3://bucket/key>")
    if not cfg.usecase.modalities:
        raise ConfigError("usecase.modalities", "must list at least one modality")
    for m in cfg.usecase.modalities:
        _one_of("usecase.modalities", m, modality_names())
    _one_of("usecase.partial_assets", cfg.usecase.partial_assets, PARTIAL_ASSETS)
    validate_embedding(cfg.embedding)
    validate_segmentation(cfg.segmentation)
    validate_bedrock(cfg.bedrock, cfg.segmentation)
    validate_qdrant(cfg.qdrant)
    validate_resources(cfg.resources)
    validate_inputs(cfg.inputs)
    if cfg.limit is not None and cfg.limit < 1:
        raise ConfigError("limit", f"must be >= 1 or null, got {cfg.limit}")
    if not cfg.state.path:
        raise ConfigError("state.path", "must name a folder for the journal")
    if not cfg.state.lock_stale_after_s > 0:
        raise ConfigError("state.lock_stale_after_s", "must be > 0")
    fraction = cfg.limits.max_dead_letter_fraction
    if fraction is not None and not 0.0 <= fraction <= 1.0:
        raise ConfigError("limits.max_dead_letter_fraction", f"must be in [0, 1], got {fraction}")
    _positive("limits.run_deadline_s", cfg.limits.run_deadline_s)
    _positive("decode.timeout_s", cfg.decode.timeout_s)
    _positive("decode.memory_limit_mb", cfg.decode.memory_limit_mb)
    validate_limits(cfg.limits)

    _one_of("parameters_from", cfg.parameters_from, ("collection", "config"))
    if cfg.qdrant.physical_collection is not None and not cfg.qdrant.physical_collection:
        raise ConfigError("qdrant.physical_collection", "must be null or a collection name")


def validate_limits(cfg: LimitsConfig, prefix: str = "limits") -> None:
    """Run and per-asset limits: positive when set."""
    for key in (
        "max_calls",
        "max_usd",
        "max_pages_per_asset",
        "max_media_seconds_per_asset",
        "max_segments_per_asset",
        "max_bytes_per_asset",
    ):
        value = getattr(cfg, key)
        if value is not None and not value > 0:
            raise ConfigError(f"{prefix}.{key}", f"must be > 0 or null, got {value!r}")


def validate_migrate(cfg: MigrateJobConfig) -> None:
    """Every check for ``jobs.migrate`` (the backfill's, then the migration's own keys)."""
    if cfg.rollback and cfg.adopt:
        raise ConfigError("rollback", "rollback=true and adopt=true are separate steps")
    if cfg.rollback or cfg.adopt:
        # Neither reads the manifest: only the store and the alias matter.
        validate_qdrant(cfg.qdrant)
    else:
        validate_backfill(cfg)
    if cfg.alias is not None and not cfg.alias:
        raise ConfigError("alias", "must name the alias to migrate")
    if cfg.qdrant.physical_collection is not None:
        raise ConfigError(
            "qdrant.physical_collection", "is chosen by the migration (the next version)"
        )
    _one_of("strategy", cfg.strategy, ("reembed", "matryoshka"))
    if cfg.matryoshka.sample_size < 2:
        raise ConfigError(
            "matryoshka.sample_size",
            f"must be >= 2 (one preflight call and at least one sampled point), "
            f"got {cfg.matryoshka.sample_size}",
        )
    if not 0.0 < cfg.matryoshka.tolerance < 1.0:
        raise ConfigError(
            "matryoshka.tolerance", f"must be in (0, 1), got {cfg.matryoshka.tolerance}"
        )
    val = cfg.validation
    if val.sample_queries < 0:
        raise ConfigError("validation.sample_queries", f"must be >= 0, got {val.sample_queries}")
    if not 1 <= val.k <= 100:
        raise ConfigError("validation.k", f"must be in 1..100, got {val.k}")
    for key in ("max_recall_drop", "max_mrr_drop"):
        value = getattr(val, key)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"validation.{key}", f"must be in [0, 1], got {value}")
    if not val.norm_tolerance > 0:
        raise ConfigError("validation.norm_tolerance", f"must be > 0, got {val.norm_tolerance}")
