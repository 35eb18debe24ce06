"""The sync client: one call per embed(), retry helper, picklable construction."""

from __future__ import annotations

import io
import json
import pickle
import random
from typing import Any

import botocore.exceptions as bce
import pytest

from pipelines.bedrock.client import NovaEmbeddingsClient, make_bedrock_client
from pipelines.bedrock.errors import BedrockCallError, ErrorClass
from pipelines.bedrock.request import EmbeddingRequest
from pipelines.config.schema import BedrockConfig


class ScriptedRuntime:
    """Stands in for bedrock-runtime: answers from a script of errors and successes and
    records the bodies it received."""

    def __init__(self, script: list[Any], dim: int = 256) -> None:
        self.script = list(script)
        self.dim = dim
        self.bodies: list[dict[str, Any]] = []

    def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
        self.bodies.append(json.loads(kwargs["body"]))
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, BaseException):
            raise step
        body = {"embeddings": [{"embeddingType": "TEXT", "embedding": [0.5] * self.dim}]}
        return {
            "body": io.BytesIO(json.dumps(body).encode()),
            "ResponseMetadata": {
                "HTTPHeaders": {"x-amzn-bedrock-input-token-count": "7", "x-amzn-requestid": "r"}
            },
        }


def err(code: str, status: int) -> bce.ClientError:
    return bce.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "InvokeModel",
    )


REQ = EmbeddingRequest.for_text("hello", dimension=256)


def test_embed_makes_one_call_and_parses() -> None:
    rt = ScriptedRuntime([])
    res = NovaEmbeddingsClient(rt).embed(REQ)
    assert res.vector == [0.5] * 256
    assert res.input_tokens == 7
    assert res.latency_ms is not None and res.latency_ms >= 0
    assert rt.bodies == [REQ.to_body()]


def test_embed_does_not_retry() -> None:
    rt = ScriptedRuntime([err("ThrottlingException", 429)])
    with pytest.raises(BedrockCallError) as info:
        NovaEmbeddingsClient(rt).embed(REQ)
    assert info.value.error_class is ErrorClass.THROTTLED
    assert len(rt.bodies) == 1


def test_invalid_request_fails_before_any_call() -> None:
    rt = ScriptedRuntime([])
    with pytest.raises(BedrockCallError) as info:
        NovaEmbeddingsClient(rt).embed(EmbeddingRequest.for_text("x", dimension=100))
    assert info.value.error_class is ErrorClass.PERMANENT
    assert "singleEmbeddingParams.embeddingDimension" in info.value.message
    assert rt.bodies == []


def test_dimension_mismatch_from_service() -> None:
    rt = ScriptedRuntime([], dim=1024)
    with pytest.raises(BedrockCallError) as info:
        NovaEmbeddingsClient(rt).embed(REQ)
    assert info.value.code == "dimension_mismatch"


def test_embed_with_retry_retries_throttles_and_transients() -> None:
    rt = ScriptedRuntime(
        [
            err("ThrottlingException", 429),
            bce.ReadTimeoutError(endpoint_url="x"),
            err("ThrottlingException", 429),
        ]
    )
    sleeps: list[float] = []
    res = NovaEmbeddingsClient(rt).embed_with_retry(
        REQ, 5, base_backoff_s=1.0, max_backoff_s=3.0, sleep=sleeps.append, rng=random.Random(1)
    )
    assert (res.calls, res.throttles) == (4, 1 + 1)
    assert len(sleeps) == 3
    # full jitter, capped: attempt n sleeps within [0, min(3, 2^n)]
    for n, s in enumerate(sleeps):
        assert 0.0 <= s <= min(3.0, 2.0**n)


@pytest.mark.parametrize(
    "code,status", [("ValidationException", 400), ("AccessDeniedException", 403)]
)
def test_embed_with_retry_does_not_retry_permanent_or_fatal(code: str, status: int) -> None:
    rt = ScriptedRuntime([err(code, status)])
    with pytest.raises(BedrockCallError) as info:
        NovaEmbeddingsClient(rt).embed_with_retry(REQ, 5, sleep=lambda s: None)
    assert info.value.code == code
    assert len(rt.bodies) == 1


def test_embed_with_retry_gives_up() -> None:
    rt = ScriptedRuntime([err("ServiceUnavailableException", 503)] * 10)
    with pytest.raises(BedrockCallError):
        NovaEmbeddingsClient(rt).embed_with_retry(REQ, 3, sleep=lambda s: None)
    assert len(rt.bodies) == 3


def test_model_error_retries_are_bounded() -> None:
    rt = ScriptedRuntime([err("ModelErrorException", 424)] * 10)
    with pytest.raises(BedrockCallError):
        NovaEmbeddingsClient(rt).embed_with_retry(REQ, 8, sleep=lambda s: None)
    assert len(rt.bodies) == 3  # first try + 2 bounded retries


def test_make_bedrock_client_config() -> None:
    cfg = BedrockConfig(
        endpoint_url="http://127.0.0.1:9",
        region="eu-west-1",
        connect_timeout_s=3,
        read_timeout_s=7,
    )
    client = make_bedrock_client(cfg, max_pool_connections=34)
    conf = client.meta.config
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.region_name == "eu-west-1"
    assert conf.retries["total_max_attempts"] == 1
    assert (conf.connect_timeout, conf.read_timeout) == (3, 7)
    assert conf.max_pool_connections == 34


def test_from_config_pickles_and_builds_lazily() -> None:
    cfg = BedrockConfig(endpoint_url="http://127.0.0.1:9")
    c = NovaEmbeddingsClient.from_config(cfg, "model-x")
    _ = c.boto_client  # built once here...
    back = pickle.loads(pickle.dumps(c))  # ...and not pickled
    assert back.model_id == "model-x"
    assert back._client is None
    assert back.boto_client.meta.endpoint_url == "http://127.0.0.1:9"


def test_client_around_a_boto_client_refuses_to_pickle() -> None:
    with pytest.raises(TypeError, match="from_config"):
        pickle.dumps(NovaEmbeddingsClient(ScriptedRuntime([])))
