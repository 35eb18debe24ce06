"""The synchronous Nova Multimodal Embeddings client.

:class:`NovaEmbeddingsClient.embed` makes exactly one ``InvokeModel`` call: botocore's own retries
are switched off (``total_max_attempts=1``) because the pipeline's embed stage owns retries and
pacing against one cluster-wide rate budget, and counts them. Callers outside the pipeline (query
jobs, notebooks) use :meth:`NovaEmbeddingsClient.embed_with_retry`, which retries only THROTTLED
and TRANSIENT errors through the project's retry helper (:mod:`pipelines.core.retry`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipelines.bedrock.errors import (
    BedrockRetryRule,
    RequestValidationError,
    from_exception,
    is_throttle,
)
from pipelines.bedrock.request import EmbeddingRequest
from pipelines.bedrock.response import EmbeddingResult, parse_embedding_response
from pipelines.config.schema import NOVA_MME_MODEL_ID, BedrockConfig
from pipelines.core.retry import Failure, RetryPolicy, retry_call


def make_bedrock_client(cfg: BedrockConfig, *, max_pool_connections: int | None = None) -> Any:
    """A boto3 ``bedrock-runtime`` client for ``cfg`` (AWS, or ``cfg.endpoint_url``).

    One attempt per call (the caller retries), the configured timeouts, and a connection pool
    large enough for the requests one actor keeps in flight.
    """
    import boto3
    from botocore.config import Config

    pool = max_pool_connections or 10
    config = Config(
        region_name=cfg.region,
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=cfg.connect_timeout_s,
        read_timeout=cfg.read_timeout_s,
        max_pool_connections=pool,
        tcp_keepalive=True,
    )
    return boto3.client(
        "bedrock-runtime", region_name=cfg.region, endpoint_url=cfg.endpoint_url, config=config
    )


class NovaEmbeddingsClient:
    """Embeds one :class:`EmbeddingRequest` per call with ``InvokeModel``.

    Build it with a boto3 client (tests, notebooks) or from configuration with
    :meth:`from_config`; the latter is picklable and creates its boto3 client lazily in whichever
    process (Ray worker) first uses it.
    """

    def __init__(
        self,
        boto_client: Any | None = None,
        model_id: str = NOVA_MME_MODEL_ID,
        *,
        config: BedrockConfig | None = None,
    ) -> None:
        if boto_client is None and config is None:
            raise ValueError("pass a boto3 bedrock-runtime client or a BedrockConfig")
        if not model_id:
            raise ValueError("model_id must not be empty")
        self._client = boto_client
        self._config = config
        self.model_id = model_id

    @classmethod
    def from_config(
        cls, cfg: BedrockConfig, model_id: str = NOVA_MME_MODEL_ID
    ) -> NovaEmbeddingsClient:
        """A picklable client whose boto3 client is made on first use."""
        return cls(None, model_id, config=cfg)

    @property
    def boto_client(self) -> Any:
        if self._client is None:
            assert self._config is not None
            self._client = make_bedrock_client(self._config)
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        if self._config is None:
            raise TypeError(
                "a NovaEmbeddingsClient built around a boto3 client cannot be pickled; "
                "use NovaEmbeddingsClient.from_config()"
            )
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        """One ``InvokeModel`` call; every failure raises :class:`BedrockCallError`.

        An invalid request fails before the call as PERMANENT ``InvalidRequest`` (its
        :class:`RequestValidationError`, with the JSON field path, is the ``__cause__``).
        """
        try:
            body = request.to_body_bytes()
        except RequestValidationError as exc:
            raise from_exception(exc) from exc
        started = time.perf_counter()
        try:
            response = self.boto_client.invoke_model(
                modelId=self.model_id,
                body=body,
                contentType="application/json",
                accept="application/json",
            )
            payload = response["body"].read()
        except (ClientError, BotoCoreError, OSError) as exc:
            raise from_exception(exc) from exc
        latency_ms = (time.perf_counter() - started) * 1000.0
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
        return parse_embedding_response(
            payload,
            headers,
            expected_dimension=request.dimension,
            expected_types=request.expected_types(),
            latency_ms=latency_ms,
        )

    def embed_with_retry(
        self,
        request: EmbeddingRequest,
        max_attempts: int = 5,
        *,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> EmbeddingResult:
        """:meth:`embed` with up to ``max_attempts`` attempts for THROTTLED / TRANSIENT errors
        (:func:`~pipelines.core.retry.retry_call`: full-jitter backoff, per-code bounds). Not for
        the pipeline, whose embed stage paces retries itself. Raises the last
        :class:`BedrockCallError` when it gives up."""
        policy = RetryPolicy(max_attempts, base_s=base_backoff_s, cap_s=max_backoff_s)
        failures: list[Failure] = []
        result = retry_call(
            lambda: self.embed(request),
            BedrockRetryRule(max_attempts - 1),
            policy,
            on_failure=failures.append,
            sleep=sleep,
            rng=rng,
        )
        throttles = sum(1 for f in failures if is_throttle(f.error))
        return replace(result, calls=len(failures) + 1, throttles=throttles)


def embed_with_retry(
    client: NovaEmbeddingsClient, request: EmbeddingRequest, max_attempts: int = 5
) -> EmbeddingResult:
    """Module-level shorthand for :meth:`NovaEmbeddingsClient.embed_with_retry`."""
    return client.embed_with_retry(request, max_attempts)
