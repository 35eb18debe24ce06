"""Error classification by botocore Error.Code / HTTP status / exception type, never message."""

from __future__ import annotations

import pickle

import botocore.exceptions as bce
import pytest

from pipelines.bedrock.errors import (
    BedrockCallError,
    ErrorClass,
    RequestValidationError,
    classify_code,
    from_exception,
    max_retries_for,
)


def client_error(code: str, status: int, message: str = "m") -> bce.ClientError:
    return bce.ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "req-1"},
        },
        "InvokeModel",
    )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ThrottlingException", 429, ErrorClass.THROTTLED),
        ("ModelNotReadyException", 429, ErrorClass.TRANSIENT),
        ("ModelTimeoutException", 408, ErrorClass.TRANSIENT),
        ("ModelErrorException", 424, ErrorClass.TRANSIENT),
        ("InternalServerException", 500, ErrorClass.TRANSIENT),
        ("ServiceUnavailableException", 503, ErrorClass.TRANSIENT),
        ("ValidationException", 400, ErrorClass.PERMANENT),
        ("ServiceQuotaExceededException", 400, ErrorClass.THROTTLED),
        ("ConflictException", 400, ErrorClass.PERMANENT),
        ("ResourceNotFoundException", 404, ErrorClass.PERMANENT),
        ("AccessDeniedException", 403, ErrorClass.FATAL),
        ("UnrecognizedClientException", 403, ErrorClass.FATAL),
        ("InvalidSignatureException", 403, ErrorClass.FATAL),
        ("ExpiredTokenException", 403, ErrorClass.FATAL),
        # Unknown codes fall back on the HTTP status.
        ("SomethingNew", 429, ErrorClass.THROTTLED),
        ("SomethingNew", 502, ErrorClass.TRANSIENT),
        ("SomethingNew", 408, ErrorClass.TRANSIENT),
        ("SomethingNew", 401, ErrorClass.FATAL),
        ("SomethingNew", 413, ErrorClass.PERMANENT),
    ],
)
def test_client_errors(code: str, status: int, expected: ErrorClass) -> None:
    err = from_exception(client_error(code, status))
    assert err.error_class is expected
    assert err.code == code
    assert err.status == status
    assert err.request_id == "req-1"
    assert err.retryable is (expected in (ErrorClass.THROTTLED, ErrorClass.TRANSIENT))


@pytest.mark.parametrize("message", ["Too many requests", "Too many tokens", "throttl", ""])
def test_message_text_is_ignored(message: str) -> None:
    # A ValidationException that happens to mention throttling is still a validation error.
    assert from_exception(client_error("ValidationException", 400, message)).error_class is (
        ErrorClass.PERMANENT
    )
    assert from_exception(client_error("ThrottlingException", 429, message)).error_class is (
        ErrorClass.THROTTLED
    )


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (bce.EndpointConnectionError(endpoint_url="http://x"), ErrorClass.TRANSIENT),
        (bce.ConnectionClosedError(endpoint_url="http://x"), ErrorClass.TRANSIENT),
        (bce.ReadTimeoutError(endpoint_url="http://x"), ErrorClass.TRANSIENT),
        (bce.ConnectTimeoutError(endpoint_url="http://x"), ErrorClass.TRANSIENT),
        (bce.ResponseStreamingError(error="reset"), ErrorClass.TRANSIENT),
        (ConnectionResetError(), ErrorClass.TRANSIENT),
        (bce.NoCredentialsError(), ErrorClass.FATAL),
        (bce.PartialCredentialsError(provider="env", cred_var="secret"), ErrorClass.FATAL),
        (bce.NoRegionError(), ErrorClass.FATAL),
        (bce.ParamValidationError(report="bad"), ErrorClass.PERMANENT),
        (RequestValidationError("singleEmbeddingParams.x", "bad"), ErrorClass.PERMANENT),
    ],
)
def test_exception_types(exc: Exception, expected: ErrorClass) -> None:
    assert from_exception(exc).error_class is expected


def test_unrelated_exceptions_are_not_swallowed() -> None:
    with pytest.raises(TypeError):
        from_exception(KeyError("x"))


def test_classify_code_without_status() -> None:
    assert classify_code("ThrottlingException") is ErrorClass.THROTTLED
    assert classify_code(None, None) is ErrorClass.TRANSIENT


def test_model_error_retries_are_bounded() -> None:
    assert max_retries_for("ModelErrorException", 7) == 2
    assert max_retries_for("ModelErrorException", 1) == 1
    assert max_retries_for("ThrottlingException", 7) == 7


def test_errors_survive_pickle() -> None:
    # They cross Ray process boundaries.
    err = BedrockCallError("ThrottlingException", ErrorClass.THROTTLED, "slow", 429, "r")
    back = pickle.loads(pickle.dumps(err))
    assert (back.code, back.error_class, back.message, back.status, back.request_id) == (
        "ThrottlingException",
        ErrorClass.THROTTLED,
        "slow",
        429,
        "r",
    )
    rve = pickle.loads(pickle.dumps(RequestValidationError("a.b", "bad")))
    assert rve.field == "a.b" and rve.code == "invalid_request" and "a.b: bad" in str(rve)


@pytest.mark.parametrize(
    ("code", "status", "dead_letter_code"),
    [
        ("ValidationException", 400, "validation_exception"),
        ("ThrottlingException", 429, "throttling_exception"),
        ("TooManyRequestsException", 429, "throttling_exception"),
        ("ModelErrorException", 424, "model_error_exception"),
        ("InternalFailure", 500, "internal_server_exception"),
        ("SomethingNew", 502, "service_error"),
    ],
)
def test_service_codes_become_snake_case_dead_letter_codes(
    code: str, status: int, dead_letter_code: str
) -> None:
    err = from_exception(client_error(code, status, "why"))
    assert err.dead_letter_code == dead_letter_code
    failed = err.record_error("embed")
    assert (failed.stage, failed.code) == ("embed", dead_letter_code)
    # Under the catch-all code the service's own code is kept in the message.
    assert failed.message == ("SomethingNew: why" if dead_letter_code == "service_error" else "why")


def test_own_codes_are_dead_letter_codes_already() -> None:
    err = from_exception(bce.ReadTimeoutError(endpoint_url="http://x"))
    assert err.code == err.dead_letter_code == "read_timeout"
