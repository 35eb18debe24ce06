"""Injected faults, quotas and latency, observed through real boto3 (botocore's own parsing)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from nova_devkit.emulator.errors import ERROR_STATUS, TOO_MANY_REQUESTS, TOO_MANY_TOKENS
from pipelines.config.schema import NOVA_MME_MODEL_ID

BODY = json.dumps(
    {
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": "GENERIC_INDEX",
            "embeddingDimension": 256,
            "text": {"truncationMode": "END", "value": "a short text of forty characters or so.."},
        },
    }
)  # 40 chars -> 10 tokens


def call(client: Any, body: str = BODY) -> dict:
    return json.loads(client.invoke_model(modelId=NOVA_MME_MODEL_ID, body=body)["body"].read())


def error_of(client: Any, body: str = BODY) -> dict:
    with pytest.raises(ClientError) as info:
        call(client, body)
    return info.value.response


@pytest.mark.parametrize("code", sorted(ERROR_STATUS))
def test_every_error_code_reaches_botocore(bedrock_runtime: Any, emulator: Any, code: str) -> None:
    emulator.emulator.script([{"code": code, "message": f"scripted {code}"}])
    err = error_of(bedrock_runtime)
    assert err["Error"]["Code"] == code
    assert err["Error"]["Message"] == f"scripted {code}"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == ERROR_STATUS[code]
    if code == "ModelErrorException":
        assert err["originalStatusCode"] == 500
        assert err["resourceName"] == NOVA_MME_MODEL_ID
    # The script is used up: the next request succeeds.
    assert len(call(bedrock_runtime)["embeddings"][0]["embedding"]) == 256
    [rec, ok] = emulator.emulator.requests
    assert (rec.injected, rec.error_code, rec.status) == (code, code, ERROR_STATUS[code])
    assert ok.status == 200 and ok.injected is None
    assert emulator.emulator.stats()["errors"] == {code: 1}


def test_error_codes_on_start_async_invoke(bedrock_runtime: Any, emulator: Any) -> None:
    emulator.emulator.script(["ServiceUnavailableException"])
    with pytest.raises(ClientError) as info:
        bedrock_runtime.start_async_invoke(
            modelId=NOVA_MME_MODEL_ID,
            modelInput={},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bucket/out"}},
        )
    assert info.value.response["Error"]["Code"] == "ServiceUnavailableException"


def test_dropped_connection_and_malformed_body(bedrock_runtime: Any, emulator: Any) -> None:
    emulator.emulator.script(["DroppedConnection", "MalformedBody", "ok"])
    with pytest.raises(ConnectionClosedError):
        call(bedrock_runtime)
    resp = bedrock_runtime.invoke_model(modelId=NOVA_MME_MODEL_ID, body=BODY)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp["body"].read())
    assert call(bedrock_runtime)["embeddings"]
    stats = emulator.emulator.stats()
    assert stats["injected"] == {"DroppedConnection": 1, "MalformedBody": 1}
    assert stats["successes"] == 2  # the malformed answer was a 200


def test_fault_rates_are_seeded(bedrock_runtime: Any, emulator: Any) -> None:
    def run() -> list[str]:
        emulator.emulator.reset()
        emulator.emulator.configure(
            faults={"ThrottlingException": 0.3, "InternalServerException": 0.2}
        )
        codes = []
        for _ in range(30):
            try:
                call(bedrock_runtime)
                codes.append("ok")
            except ClientError as exc:
                codes.append(exc.response["Error"]["Code"])
        return codes

    first = run()
    assert first == run()  # same seed, same sequence
    assert 3 <= first.count("ThrottlingException") <= 18
    assert 1 <= first.count("InternalServerException") <= 14
    assert emulator.emulator.stats()["throttles"] == first.count("ThrottlingException")


def test_invalid_fault_config_is_rejected(emulator: Any) -> None:
    with pytest.raises(ValueError, match="unknown fault code"):
        emulator.emulator.configure(faults={"Boom": 0.1})
    with pytest.raises(ValueError, match="unknown outcome code"):
        emulator.emulator.script(["Boom"])
    with pytest.raises(ValueError, match="unknown emulator config key"):
        emulator.emulator.configure(latency_seconds=1)


def test_requests_per_minute_quota(bedrock_runtime: Any, emulator: Any) -> None:
    # 60/min with 2 s of burst: a bucket of 2 requests, refilled at 1 per second.
    emulator.emulator.configure(quota={"requests_per_minute": 60, "burst_seconds": 2})
    call(bedrock_runtime)
    call(bedrock_runtime)
    err = error_of(bedrock_runtime)
    assert err["Error"]["Code"] == "ThrottlingException"
    assert err["Error"]["Message"] == TOO_MANY_REQUESTS
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 429
    time.sleep(1.05)
    call(bedrock_runtime)
    assert emulator.emulator.stats()["throttles"] == 1


def test_tokens_per_minute_quota(bedrock_runtime: Any, emulator: Any) -> None:
    # 600 tokens/min, 2 s burst: 20 tokens of bucket; each request costs 10 tokens.
    emulator.emulator.configure(quota={"tokens_per_minute": 600, "burst_seconds": 2})
    call(bedrock_runtime)
    call(bedrock_runtime)
    err = error_of(bedrock_runtime)
    assert err["Error"]["Message"] == TOO_MANY_TOKENS
    stats = emulator.emulator.stats()
    assert (stats["tokens"], stats["throttles"], stats["successes"]) == (20, 1, 2)


def test_latency_model(bedrock_runtime: Any, emulator: Any) -> None:
    emulator.emulator.configure(latency_ms=150, jitter_ms=50, latency={"text": 100})
    t0 = time.perf_counter()
    resp = bedrock_runtime.invoke_model(modelId=NOVA_MME_MODEL_ID, body=BODY)
    elapsed = time.perf_counter() - t0
    assert 0.25 <= elapsed < 2.0
    header = int(resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-invocation-latency"])
    assert 250 <= header <= 400
    # A scripted delay applies to errors too (a slow timeout).
    emulator.emulator.configure(latency_ms=0, jitter_ms=0, latency={"text": 0})
    emulator.emulator.script([{"code": "ModelTimeoutException", "delay_ms": 200}])
    t0 = time.perf_counter()
    assert error_of(bedrock_runtime)["Error"]["Code"] == "ModelTimeoutException"
    assert time.perf_counter() - t0 >= 0.2


def test_in_flight_is_counted(bedrock_runtime: Any, emulator: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    emulator.emulator.configure(latency_ms=300)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: call(bedrock_runtime), range(4)))
    stats = emulator.emulator.stats()
    assert stats["max_in_flight"] >= 2 and stats["in_flight"] == 0


def test_token_bucket_refills_with_a_fake_clock() -> None:
    from nova_devkit.emulator.config import EmulatorQuotaConfig
    from nova_devkit.emulator.errors import ApiError
    from nova_devkit.emulator.quotas import QuotaEnforcer

    now = [0.0]
    quotas = QuotaEnforcer(
        EmulatorQuotaConfig(tokens_per_minute=6000, burst_seconds=1), clock=lambda: now[0]
    )
    quotas.take_tokens(100)  # the whole 100-token bucket
    with pytest.raises(ApiError, match="Too many tokens"):
        quotas.take_tokens(10)
    now[0] += 0.1  # +10 tokens
    quotas.take_tokens(10)
    now[0] += 10.0  # full again: a request bigger than the bucket passes, leaving debt
    quotas.take_tokens(500)
    now[0] += 1.0
    with pytest.raises(ApiError):
        quotas.take_tokens(1)
