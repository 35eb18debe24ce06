"""The service's error codes, HTTP statuses and wire shape, as the local endpoint sends them.

botocore reads the code from the ``x-amzn-ErrorType`` header (the text before ``:``) and the
message from the JSON body, so an :class:`ApiError` rendered by :meth:`ApiError.wire` surfaces in
``e.response["Error"]["Code"]`` exactly as the real service's errors do.
"""

from __future__ import annotations

import json
from typing import Any

ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"

# Code -> HTTP status, from the service model / the API doc's table.
ERROR_STATUS: dict[str, int] = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
    "ConflictException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}

# Transport-level faults that are not service errors.
DROPPED_CONNECTION = "DroppedConnection"
MALFORMED_BODY = "MalformedBody"
# StartAsyncInvoke accepts the job, which then ends Failed (a no-op for InvokeModel).
ASYNC_JOB_FAILURE = "AsyncJobFailure"
# InvokeModel answers 200 with well-formed JSON whose vectors are wrong: one value short of the
# requested dimension, or holding NaN (as JSON's non-standard NaN, which Python's json reads).
WRONG_DIMENSION = "WrongDimension"
NAN_VECTOR = "NanVector"
# InvokeModel answers normally, with vectors of another seed: valid, deterministic, normalised,
# and unrelated to what the same input gets otherwise (a model that disagrees).
OTHER_VECTORS = "OtherVectors"
TRANSPORT_FAULTS = (
    DROPPED_CONNECTION,
    MALFORMED_BODY,
    ASYNC_JOB_FAILURE,
    WRONG_DIMENSION,
    NAN_VECTOR,
    OTHER_VECTORS,
)
# Everything the fault injector accepts (rates and scripts).
FAULT_CODES: tuple[str, ...] = (
    *(c for c in ERROR_STATUS if c not in ("ValidationException", "ConflictException")),
    *TRANSPORT_FAULTS,
)

TOO_MANY_REQUESTS = "Too many requests, please wait before trying again."
TOO_MANY_TOKENS = "Too many tokens, please wait before trying again."

# Default messages for injected faults (close to what the service says; never parsed by clients).
DEFAULT_MESSAGES: dict[str, str] = {
    "ServiceQuotaExceededException": "Your request exceeds the service quota for your account.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ResourceNotFoundException": "The specified resource could not be found.",
    "ModelTimeoutException": "Model has timed out in processing the request.",
    "ModelErrorException": "The model encountered an error processing the request.",
    "ThrottlingException": TOO_MANY_REQUESTS,
    "ModelNotReadyException": "Model is not ready to serve inference requests.",
    "InternalServerException": "The server encountered an internal error.",
    "ServiceUnavailableException": "The service is temporarily unavailable.",
    "ConflictException": "The request conflicts with a previous request.",
    "ValidationException": "Malformed input request.",
}


class ApiError(Exception):
    """An error response of the service: code, HTTP status, message and extra body fields."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if code not in ERROR_STATUS and status is None:
            raise ValueError(f"unknown error code {code!r}; pass status explicitly")
        self.code = code
        self.message = message if message is not None else DEFAULT_MESSAGES.get(code, code)
        self.status = status if status is not None else ERROR_STATUS[code]
        self.extra = dict(extra or {})
        super().__init__(f"{code}: {self.message}")

    def body(self) -> bytes:
        """The JSON body: ``{"message": ...}`` plus the code's extra fields."""
        return json.dumps({"message": self.message, **self.extra}).encode()

    def headers(self) -> dict[str, str]:
        """Headers that carry the code the way the real service does."""
        return {"x-amzn-ErrorType": self.code + ERROR_TYPE_SUFFIX}


def validation(message: str) -> ApiError:
    """A ValidationException (400) whose message names the offending field."""
    return ApiError("ValidationException", message)


def injected(code: str, message: str | None = None, model_id: str | None = None) -> ApiError:
    """The error an injected fault sends; ModelErrorException carries its two extra fields."""
    extra: dict[str, Any] = {}
    if code == "ModelErrorException":
        extra = {"originalStatusCode": 500, "resourceName": model_id or "unknown"}
    return ApiError(code, message, extra=extra)
