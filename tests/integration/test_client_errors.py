"""Scripted faults from the local endpoint arrive as correctly classified BedrockCallErrors."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.bedrock.client import NovaEmbeddingsClient
from pipelines.bedrock.errors import BedrockCallError, ErrorClass, from_exception
from pipelines.bedrock.inputs import TextInput
from pipelines.bedrock.request import EmbeddingRequest
from pipelines.config.schema import NOVA_MME_MODEL_ID

pytestmark = pytest.mark.integration

REQ = EmbeddingRequest.for_text("fault injection", dimension=256)


@pytest.fixture
def client(bedrock_runtime: Any) -> NovaEmbeddingsClient:
    return NovaEmbeddingsClient(bedrock_runtime, NOVA_MME_MODEL_ID)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ThrottlingException", 429, ErrorClass.THROTTLED),
        ("ModelNotReadyException", 429, ErrorClass.TRANSIENT),
        ("ModelTimeoutException", 408, ErrorClass.TRANSIENT),
        ("ModelErrorException", 424, ErrorClass.TRANSIENT),
        ("InternalServerException", 500, ErrorClass.TRANSIENT),
        ("ServiceUnavailableException", 503, ErrorClass.TRANSIENT),
        ("ServiceQuotaExceededException", 400, ErrorClass.THROTTLED),
        ("ResourceNotFoundException", 404, ErrorClass.PERMANENT),
        ("AccessDeniedException", 403, ErrorClass.FATAL),
    ],
)
def test_scripted_service_errors(
    client: NovaEmbeddingsClient, emulator: Any, code: str, status: int, expected: ErrorClass
) -> None:
    emulator.emulator.script([code])
    with pytest.raises(BedrockCallError) as info:
        client.embed(REQ)
    assert (info.value.code, info.value.status, info.value.error_class) == (code, status, expected)
    # botocore made exactly one attempt: the next call is served normally.
    assert len(client.embed(REQ).vector) == 256


@pytest.mark.parametrize("fault", ["DroppedConnection", "MalformedBody"])
def test_transport_faults_are_transient(
    client: NovaEmbeddingsClient, emulator: Any, fault: str
) -> None:
    emulator.emulator.script([fault])
    with pytest.raises(BedrockCallError) as info:
        client.embed(REQ)
    assert info.value.error_class is ErrorClass.TRANSIENT


def test_service_validation_error_is_permanent(bedrock_runtime: Any) -> None:
    # Bypass client-side validation to see what the endpoint says about a bad request.
    bad = EmbeddingRequest(text=TextInput(value="x", truncation_mode="MIDDLE"), dimension=256)
    import json

    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        bedrock_runtime.invoke_model(
            modelId=NOVA_MME_MODEL_ID, body=json.dumps(bad._raw_body()).encode()
        )
    err = from_exception(info.value)
    assert (err.code, err.error_class) == ("ValidationException", ErrorClass.PERMANENT)


def test_client_rejects_what_the_service_would_reject_without_a_call(
    client: NovaEmbeddingsClient, emulator: Any
) -> None:
    before = len(emulator.emulator.requests)
    with pytest.raises(BedrockCallError) as info:
        client.embed(EmbeddingRequest.for_image(b"x", "bmp"))
    assert "singleEmbeddingParams.image.format" in info.value.message
    assert len(emulator.emulator.requests) == before


def test_embed_with_retry_recovers_from_scripted_faults(
    client: NovaEmbeddingsClient, emulator: Any
) -> None:
    emulator.emulator.script(
        ["ThrottlingException", "InternalServerException", "ThrottlingException"]
    )
    before = len(emulator.emulator.requests)
    res = client.embed_with_retry(REQ, 5, base_backoff_s=0.01, max_backoff_s=0.02)
    assert (res.calls, res.throttles) == (4, 2)
    assert len(emulator.emulator.requests) - before == 4


def test_embed_with_retry_stops_on_permanent(client: NovaEmbeddingsClient, emulator: Any) -> None:
    emulator.emulator.script(["ThrottlingException", "ValidationException"])
    with pytest.raises(BedrockCallError) as info:
        client.embed_with_retry(REQ, 5, base_backoff_s=0.01, max_backoff_s=0.02)
    assert info.value.code == "ValidationException"
