"""Errors of the Nova Multimodal Embeddings client, classified for retry decisions.

Every failure of a Bedrock call surfaces as one :class:`BedrockCallError` whose ``error_class``
says what the caller should do. Classification uses only the botocore ``Error.Code``, the HTTP
status and the exception *type*, never the message text (messages change without notice).

=====================  ==========================================================  ================
class                  codes / exceptions                                           caller does
=====================  ==========================================================  ================
THROTTLED              ThrottlingException (429), ServiceQuotaExceededException     wait (until the
                       (too many async jobs, an account quota), unknown code with   run deadline),
                       status 429                                                   slow the shared
                                                                                    rate down
TRANSIENT              ModelNotReadyException (429), ModelTimeoutException (408),   retry with
                       ModelErrorException (424, bounded: see RETRY_BOUNDS),        backoff, same
                       InternalServerException (500), ServiceUnavailableException   rate
                       (503), unknown 5xx / 408, connection errors, read/connect
                       timeouts, truncated or unparsable response bodies and
                       non-finite vectors (bounded: see RETRY_BOUNDS), any other
                       botocore error (``BotoCoreError``, bounded)
PERMANENT              ValidationException, ConflictException,                      dead-letter the
                       ResourceNotFoundException, other 4xx,                        record
                       botocore ParamValidationError, request validation,
                       returned dimension != requested dimension
FATAL                  AccessDeniedException (403), UnrecognizedClientException,    fail the job
                       InvalidSignatureException, ExpiredToken*, missing or         loudly
                       partial credentials, SSO / token / profile errors, no
                       region, unknown 401 / 403
=====================  ==========================================================  ================

Decisions (where the spec leaves room):

- ``ModelNotReadyException`` is TRANSIENT, not THROTTLED. It shares HTTP 429 with throttling but
  says the model is being (re)loaded, not that *we* are too fast; slowing the cluster-wide rate
  budget would cost throughput long after the model is ready. Backoff between attempts is enough.
- ``ModelErrorException`` is TRANSIENT with a small per-request bound (:data:`RETRY_BOUNDS`): the
  model failed on this input, which sometimes succeeds on retry and sometimes never does.
- ``AccessDeniedException`` is FATAL although the spec lists it as "no retry": on Bedrock it means
  the account has no access to the model or IAM denies ``InvokeModel``. That is true for every
  record, so dead-lettering the whole corpus one row at a time would be the wrong outcome; it is an
  infrastructure error (see :mod:`pipelines.core.errors`). Bad or missing credentials likewise.
- ``ServiceQuotaExceededException`` is THROTTLED, not PERMANENT: Bedrock returns it when too many
  async jobs run at once or an account quota is used up; both clear by waiting, and the input
  is not at fault. Throttled calls wait (``limits.run_deadline_s`` bounds the wait), they are
  never dead-lettered because a fixed number of attempts ran out.
- A 200 whose body is malformed (truncated JSON, no embeddings, a NaN or infinite value) is
  TRANSIENT with a bound of :data:`RETRY_BOUNDS` retries: a wire glitch is retried, a service
  that keeps answering garbage is not paid forever. A vector of the wrong dimension is PERMANENT
  (one try): asking again asks the same question.
- A botocore error this module does not list (a new ``BotoCoreError`` subclass) is TRANSIENT with
  a small bound, under the code ``BotoCoreError`` (the message names the class); credential
  provider errors (SSO, token, profile, config) are FATAL like missing credentials.
- ``ResourceNotFoundException`` stays PERMANENT: on ``GetAsyncInvoke`` it is one unknown job. A
  wrong model id also produces it for every call; the embed stage's dead-letter counts show
  that.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import botocore.exceptions as bce

from pipelines.config.schema import BedrockConfig
from pipelines.core import codes
from pipelines.core.errors import InfrastructureError, RecordError
from pipelines.core.retry import RetryPolicy


class ErrorClass(StrEnum):
    """What the caller should do about a failed call."""

    THROTTLED = "THROTTLED"
    TRANSIENT = "TRANSIENT"
    PERMANENT = "PERMANENT"
    FATAL = "FATAL"

    @property
    def retryable(self) -> bool:
        return self in (ErrorClass.THROTTLED, ErrorClass.TRANSIENT)


# Codes the service (or the HTTP layer) returns, by class.
THROTTLED_CODES = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "ServiceQuotaExceededException"}
)
TRANSIENT_CODES = frozenset(
    {
        "ModelNotReadyException",
        "ModelTimeoutException",
        "ModelErrorException",
        "InternalServerException",
        "InternalFailure",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
PERMANENT_CODES = frozenset(
    {
        "ValidationException",
        "ConflictException",
        "ResourceNotFoundException",
        "SerializationException",
    }
)
FATAL_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
    }
)

# Codes of errors raised by this package itself (no service involved): dead-letter codes already.
CODE_MALFORMED_RESPONSE = codes.MALFORMED_RESPONSE
CODE_DIMENSION_MISMATCH = codes.DIMENSION_MISMATCH
CODE_CONNECTION = codes.CONNECTION_ERROR
CODE_READ_TIMEOUT = codes.READ_TIMEOUT
CODE_NO_CREDENTIALS = codes.NO_CREDENTIALS
CODE_PARAM_VALIDATION = codes.PARAM_VALIDATION_ERROR
CODE_INVALID_REQUEST = codes.INVALID_REQUEST
CODE_NON_FINITE = codes.NON_FINITE_VECTOR
# A botocore error this module does not list (the message names its class).
CODE_BOTOCORE = "BotoCoreError"

# Per-request retry bounds for TRANSIENT codes that should not use the caller's full budget:
# a model failure on this input, and answers that are paid for but unusable.
RETRY_BOUNDS: Mapping[str, int] = {
    "ModelErrorException": 2,
    CODE_MALFORMED_RESPONSE: 2,
    CODE_NON_FINITE: 2,
    CODE_BOTOCORE: 2,
}

# Credential providers' errors: no call of the job can be signed (the job stops).
_CREDENTIAL_ERRORS: tuple[type[BaseException], ...] = (
    bce.NoCredentialsError,
    bce.PartialCredentialsError,
    bce.CredentialRetrievalError,
    bce.NoRegionError,
    bce.SSOError,
    bce.SSOTokenLoadError,
    bce.TokenRetrievalError,
    bce.UnauthorizedSSOTokenError,
    bce.NoAuthTokenError,
    bce.UnknownCredentialError,
    bce.RefreshWithMFAUnsupportedError,
    bce.MetadataRetrievalError,
    bce.ProfileNotFound,
    bce.ConfigNotFound,
    bce.InvalidConfigError,
    bce.UnknownTokenProviderError,
)


def classify_code(code: str | None, status: int | None = None) -> ErrorClass:
    """The class of a service error from its ``Error.Code`` and, as fallback, its HTTP status."""
    if code in THROTTLED_CODES:
        return ErrorClass.THROTTLED
    if code in TRANSIENT_CODES:
        return ErrorClass.TRANSIENT
    if code in PERMANENT_CODES:
        return ErrorClass.PERMANENT
    if code in FATAL_CODES:
        return ErrorClass.FATAL
    if status is None:
        # No code we know and no status: most likely a broken response; retrying is bounded.
        return ErrorClass.TRANSIENT
    if status == 429:
        return ErrorClass.THROTTLED
    if status in (401, 403):
        return ErrorClass.FATAL
    if status == 408 or status >= 500:
        return ErrorClass.TRANSIENT
    return ErrorClass.PERMANENT


def max_retries_for(code: str, default: int) -> int:
    """How many retries one request may spend on ``code`` (``default`` unless bounded)."""
    bound = RETRY_BOUNDS.get(code)
    return default if bound is None else min(bound, default)


class BedrockCallError(Exception):
    """A Bedrock call failed. ``error_class`` decides retry, dead-letter or job failure.

    ``code`` is the botocore ``Error.Code`` (or one of this module's ``CODE_*`` values for errors
    with no service code), ``status`` the HTTP status when a response arrived.
    :attr:`dead_letter_code` is the code a record failed by it is dead-lettered under.
    """

    def __init__(
        self,
        code: str,
        error_class: ErrorClass,
        message: str,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{code} ({error_class.value}, HTTP {status}): {message}")
        self.code = code
        self.error_class = error_class
        self.message = message
        self.status = status
        self.request_id = request_id

    @property
    def retryable(self) -> bool:
        return self.error_class.retryable

    @property
    def dead_letter_code(self) -> str:
        """The snake_case dead-letter code (:func:`pipelines.core.codes.from_service_code`)."""
        return codes.from_service_code(self.code)

    def record_error(self, stage: str, message: str | None = None) -> RecordError:
        """The :class:`RecordError` of a record this error fails (under the catch-all
        ``service_error``, the service's own code leads the message)."""
        text = self.message if message is None else message
        if self.dead_letter_code == codes.SERVICE_ERROR:
            text = f"{self.code}: {text}"
        return RecordError(stage, self.dead_letter_code, text)

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions cross Ray process boundaries by pickle; keep every field.
        return (
            type(self),
            (self.code, self.error_class, self.message, self.status, self.request_id),
        )


class RequestValidationError(RecordError, ValueError):
    """A request the service would reject, caught before the call (stage ``embed``, code
    ``invalid_request``). ``field`` is the JSON path (e.g. ``singleEmbeddingParams.image.format``)
    and leads the message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__("embed", CODE_INVALID_REQUEST, f"{field}: {message}")
        self.field = field
        self.detail = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.detail))


def raise_if_fatal(exc: BedrockCallError) -> None:
    """Raise :class:`InfrastructureError` for a FATAL error: every other call would fail the same
    way, so the job stops instead of dead-lettering the corpus one record at a time."""
    if exc.error_class is ErrorClass.FATAL:
        raise InfrastructureError(
            f"Bedrock refused the pipeline's calls ({exc.code}): {exc.message}. "
            "Check credentials, region and model access."
        ) from exc


def is_throttle(exc: BaseException) -> bool:
    """True when ``exc`` is a throttled Bedrock call (what the callers count as a throttle)."""
    return isinstance(exc, BedrockCallError) and exc.error_class is ErrorClass.THROTTLED


def retry_policy(cfg: BedrockConfig, deadline: float | None = None) -> RetryPolicy:
    """The retry policy of a pipeline's Bedrock calls: ``bedrock.max_attempts`` attempts with
    backoff from ``bedrock.base_backoff_s`` up to ``bedrock.max_backoff_s``.

    With ``deadline`` (a wall-clock ``time.time()`` value: the run's deadline) the number of
    attempts is left to the classifier (:class:`BedrockRetryRule` with ``wait_throttled``) and
    no retry starts after the deadline."""
    if deadline is None:
        return RetryPolicy(cfg.max_attempts, base_s=cfg.base_backoff_s, cap_s=cfg.max_backoff_s)
    import time

    return RetryPolicy(
        None,
        deadline_s=max(deadline - time.time(), 0.0),
        base_s=cfg.base_backoff_s,
        cap_s=cfg.max_backoff_s,
    )


class BedrockRetryRule:
    """The classifier of :func:`pipelines.core.retry.retry_call` for Bedrock calls, one per call.

    Retries THROTTLED and TRANSIENT errors. TRANSIENT ones at most ``max_retries`` times in all
    and at most :data:`RETRY_BOUNDS` times for the bounded codes. THROTTLED ones count against
    ``max_retries`` too, unless ``wait_throttled``: then they are retried for as long as the
    caller's policy allows (its deadline: the run deadline), since a throttle says *wait*, not
    *this record is bad*. Anything else is not retried.
    """

    def __init__(self, max_retries: int, *, wait_throttled: bool = False) -> None:
        self.max_retries = max_retries
        self.wait_throttled = wait_throttled
        self.spent: dict[str, int] = {}
        self.counted = 0

    def __call__(self, exc: BaseException) -> bool:
        if not isinstance(exc, BedrockCallError) or not exc.retryable:
            return False
        if self.wait_throttled and exc.error_class is ErrorClass.THROTTLED:
            return True
        spent = self.spent.get(exc.code, 0)
        if spent >= max_retries_for(exc.code, self.max_retries) or self.counted >= self.max_retries:
            return False
        self.spent[exc.code] = spent + 1
        self.counted += 1
        return True


def from_exception(exc: BaseException) -> BedrockCallError:
    """Turn whatever a boto3 call raised into a classified :class:`BedrockCallError`."""
    if isinstance(exc, BedrockCallError):
        return exc
    if isinstance(exc, bce.ClientError):
        err = exc.response.get("Error", {}) or {}
        meta = exc.response.get("ResponseMetadata", {}) or {}
        code = str(err.get("Code") or "")
        status_raw = meta.get("HTTPStatusCode")
        status = int(status_raw) if status_raw is not None else None
        return BedrockCallError(
            code or f"HTTP{status}",
            classify_code(code or None, status),
            str(err.get("Message") or exc),
            status=status,
            request_id=meta.get("RequestId"),
        )
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return BedrockCallError(CODE_NO_CREDENTIALS, ErrorClass.FATAL, str(exc))
    if isinstance(exc, bce.ParamValidationError):
        return BedrockCallError(CODE_PARAM_VALIDATION, ErrorClass.PERMANENT, str(exc))
    if isinstance(exc, bce.ReadTimeoutError | bce.ConnectTimeoutError | TimeoutError):
        return BedrockCallError(CODE_READ_TIMEOUT, ErrorClass.TRANSIENT, str(exc))
    if isinstance(
        exc, bce.ConnectionError | bce.HTTPClientError | bce.IncompleteReadError | ConnectionError
    ):
        # EndpointConnectionError, ConnectionClosedError, ResponseStreamingError, resets...
        return BedrockCallError(CODE_CONNECTION, ErrorClass.TRANSIENT, str(exc))
    if isinstance(exc, RequestValidationError):
        return BedrockCallError(CODE_INVALID_REQUEST, ErrorClass.PERMANENT, str(exc))
    if isinstance(exc, bce.BotoCoreError):
        # A botocore failure not listed above (a newer botocore's own class): retried a little,
        # then the record is dead-lettered ``service_error`` with the class in the message.
        return BedrockCallError(CODE_BOTOCORE, ErrorClass.TRANSIENT, f"{type(exc).__name__}: {exc}")
    raise TypeError(f"not a Bedrock call failure: {type(exc).__name__}: {exc}") from exc
