"""Preflight: prove, before any decoding, that the run can do its work.

- the store is reachable and writable (one probe point upserted and deleted);
- Bedrock accepts the job's credentials and model (one embedding of a single character, counted in
  the report's ``bedrock_calls`` and ``preflight_calls``), only when there is something to embed.
  Refused access, unknown credentials, a refused model or parameters, and an endpoint that does
  not answer stop the run; throttling or a model error on the test call do not (they say nothing
  about access, and the run's own retries handle them);
- the staging bucket is writable when service segmentation needs it (one object put and deleted).

A failure raises :class:`PreflightError` (exit code 2) with one line saying what to fix, seconds
after the start instead of minutes into a run.
"""

from __future__ import annotations

import logging
import uuid

from pipelines.config.schema import BackfillJobConfig
from pipelines.core import codes
from pipelines.core.errors import ConfigError
from pipelines.stores.base import VectorStore

# Attempts of the test call (the run's own retries handle a throttled start).
ATTEMPTS = 4
log = logging.getLogger(__name__)


class PreflightError(ConfigError):
    """The run cannot do its work; nothing was done."""


def check_store(store: VectorStore) -> None:
    """The store takes a write (the collection exists: ``ensure_collection`` ran)."""
    try:
        store.check_writable()
    except Exception as exc:
        raise PreflightError(
            "qdrant.url", f"preflight: cannot write to the store: {type(exc).__name__}: {exc}"
        ) from exc


def check_bedrock(cfg: BackfillJobConfig) -> int:
    """One tiny embedding with the job's client, model and parameters; returns the calls made."""
    from pipelines.bedrock.client import NovaEmbeddingsClient, make_bedrock_client
    from pipelines.bedrock.errors import (
        BedrockCallError,
        BedrockRetryRule,
        ErrorClass,
        retry_policy,
    )
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.core.retry import retry_call

    client = NovaEmbeddingsClient(make_bedrock_client(cfg.bedrock), cfg.embedding.model_id)
    request = EmbeddingRequest.for_text(
        ".", purpose=cfg.embedding.index_purpose, dimension=cfg.embedding.dimension
    )
    calls = 0

    def count(_attempt: int) -> None:
        nonlocal calls
        calls += 1

    try:
        retry_call(
            lambda: client.embed(request),
            BedrockRetryRule(ATTEMPTS - 1),
            retry_policy(cfg.bedrock),
            before_attempt=count,
        )
    except BedrockCallError as exc:
        unreachable = exc.code in (codes.CONNECTION_ERROR, codes.READ_TIMEOUT)
        if exc.error_class in (ErrorClass.THROTTLED, ErrorClass.TRANSIENT) and not unreachable:
            log.warning("preflight: the test call failed (%s), going on: %s", exc.code, exc)
            return calls
        what = {
            ErrorClass.FATAL: "check the credentials, the region and the model's access",
            ErrorClass.PERMANENT: "check embedding.model_id and the embedding parameters",
        }.get(exc.error_class, "the endpoint did not answer; check bedrock.endpoint_url")
        raise PreflightError(
            "bedrock", f"preflight: Bedrock refused a test call ({exc.code}: {exc.message}); {what}"
        ) from exc
    return calls


def check_staging(cfg: BackfillJobConfig) -> None:
    """Put and delete one object under ``bedrock.s3_staging_uri`` (service segmentation)."""
    from pipelines.core.io import s3_client, split_s3_uri

    assert cfg.bedrock.s3_staging_uri is not None
    bucket, prefix = split_s3_uri(cfg.bedrock.s3_staging_uri.rstrip("/") + "/")
    key = f"{prefix}_preflight/{uuid.uuid4().hex}"
    try:
        s3 = s3_client(cfg.bedrock.s3_endpoint_url, cfg.bedrock.region)
        s3.put_object(Bucket=bucket, Key=key, Body=b"preflight")
        s3.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise PreflightError(
            "bedrock.s3_staging_uri",
            f"preflight: cannot write to s3://{bucket}/{prefix}: {type(exc).__name__}: {exc}",
        ) from exc
