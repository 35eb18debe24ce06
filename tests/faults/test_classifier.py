"""Faults the classifier decides without a wire to inject them on: credentials errors botocore
raises before any request (SSO, token refresh) and errors it does not list, and the service's
quota answer. Each decision is the one ``docs/reliability.md`` documents; the wire tests next to
this file prove what the job then does with each class."""

from __future__ import annotations


def test_unlisted_botocore_errors_are_classified_not_a_type_error() -> None:
    import botocore.exceptions as bce

    from pipelines.bedrock.errors import ErrorClass, from_exception

    sso = from_exception(bce.UnauthorizedSSOTokenError())
    assert (sso.error_class, sso.dead_letter_code) == (ErrorClass.FATAL, "no_credentials")
    token = from_exception(bce.TokenRetrievalError(provider="sso", error_msg="expired"))
    assert token.error_class is ErrorClass.FATAL
    other = from_exception(
        bce.ChecksumError(checksum_type="crc32", expected_checksum="1", actual_checksum="2")
    )
    assert other.error_class is ErrorClass.TRANSIENT
    assert other.dead_letter_code == "service_error" and "ChecksumError" in other.message


def test_a_used_up_service_quota_waits_like_a_throttle() -> None:
    from pipelines.bedrock.errors import BedrockRetryRule, ErrorClass, classify_code

    assert classify_code("ServiceQuotaExceededException", 400) is ErrorClass.THROTTLED
    from pipelines.bedrock.errors import BedrockCallError

    quota = BedrockCallError("ServiceQuotaExceededException", ErrorClass.THROTTLED, "x", 400)
    waits, counts = BedrockRetryRule(2, wait_throttled=True), BedrockRetryRule(2)
    assert all(waits(quota) for _ in range(50))
    assert [counts(quota) for _ in range(3)] == [True, True, False]
