"""Parse an ``InvokeModel`` response into an :class:`EmbeddingResult` (vectors, tokens, ids)."""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from pipelines.bedrock.errors import (
    CODE_DIMENSION_MISMATCH,
    CODE_MALFORMED_RESPONSE,
    CODE_NON_FINITE,
    BedrockCallError,
    ErrorClass,
)

HEADER_INPUT_TOKENS = "x-amzn-bedrock-input-token-count"
HEADER_REQUEST_ID = "x-amzn-requestid"


@dataclass(frozen=True)
class Embedding:
    """One returned vector; ``truncated_char_length`` is set only when text was truncated."""

    embedding_type: str
    vector: list[float]
    truncated_char_length: int | None = None


@dataclass(frozen=True)
class EmbeddingResult:
    """A parsed ``InvokeModel`` response.

    ``input_tokens`` comes from the ``X-Amzn-Bedrock-Input-Token-Count`` header (None when the
    service does not send it). ``calls`` and ``throttles`` count the attempts a retrying caller
    spent (1 and 0 for a single call).
    """

    embeddings: list[Embedding]
    input_tokens: int | None = None
    request_id: str | None = None
    latency_ms: float | None = None
    calls: int = 1
    throttles: int = 0

    def by_type(self, embedding_type: str) -> Embedding:
        """The embedding of ``embedding_type`` (responses list types in no documented order)."""
        for e in self.embeddings:
            if e.embedding_type == embedding_type:
                return e
        raise KeyError(
            f"no {embedding_type} embedding; got {[e.embedding_type for e in self.embeddings]}"
        )

    @property
    def types(self) -> list[str]:
        return [e.embedding_type for e in self.embeddings]

    @property
    def vector(self) -> list[float]:
        """The vector of a one-embedding response (raises for AUDIO_VIDEO_SEPARATE)."""
        if len(self.embeddings) != 1:
            raise ValueError(f"response has {len(self.embeddings)} embeddings; use by_type()")
        return self.embeddings[0].vector


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name:
            return str(v)
    return None


def _malformed(message: str, request_id: str | None = None) -> BedrockCallError:
    return BedrockCallError(
        CODE_MALFORMED_RESPONSE, ErrorClass.TRANSIENT, message, request_id=request_id
    )


def _loads(body: bytes | str, request_id: str | None) -> Any:
    """The body's JSON. orjson first (a 1024-float answer: ~18 us against the standard
    library's ~175 us, measured per call); the standard library when orjson refuses it, since
    that one also reads ``NaN`` and ``Infinity``: a vector holding them is then reported as
    ``non_finite_vector``, not as an unreadable body."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _malformed(f"response body is not JSON: {exc}", request_id) from exc


def _finite(vector: list[float]) -> bool:
    """Whether no value is NaN or infinite. A finite sum means every term is finite (NaN and
    infinities propagate through a sum); only a sum that overflowed or is not finite needs the
    value-by-value check."""
    return math.isfinite(sum(vector)) or all(math.isfinite(x) for x in vector)


def parse_embedding_response(
    body: bytes | str | Mapping[str, Any],
    headers: Mapping[str, Any] | None = None,
    *,
    expected_dimension: int | None = None,
    expected_types: tuple[str, ...] | None = None,
    latency_ms: float | None = None,
) -> EmbeddingResult:
    """Parse an ``InvokeModel`` body (+ headers) into an :class:`EmbeddingResult`.

    An unparsable or incomplete body is TRANSIENT (``malformed_response``: a truncated response is
    the usual cause), so is a vector holding NaN or infinity (``non_finite_vector``); both are
    retried a bounded number of times (:data:`~pipelines.bedrock.errors.RETRY_BOUNDS`). A vector
    of another length than ``expected_dimension`` is PERMANENT (``dimension_mismatch``: retrying
    returns the same).
    """
    headers = headers or {}
    request_id = _header(headers, HEADER_REQUEST_ID)
    if isinstance(body, Mapping):
        doc: Any = body
    else:
        doc = _loads(body, request_id)
    items = doc.get("embeddings") if isinstance(doc, Mapping) else None
    if not isinstance(items, list) or not items:
        raise _malformed("response has no 'embeddings' list", request_id)
    embeddings: list[Embedding] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise _malformed(f"embeddings[{i}] is not an object", request_id)
        etype = item.get("embeddingType")
        vec = item.get("embedding")
        if not isinstance(etype, str) or not isinstance(vec, list) or not vec:
            raise _malformed(f"embeddings[{i}] lacks embeddingType or embedding", request_id)
        try:
            # Every value as a float (JSON integers too), checked in C: ~5x a comprehension.
            vector = array("d", vec).tolist()
        except (TypeError, ValueError, OverflowError) as exc:
            raise _malformed(f"embeddings[{i}].embedding is not numeric", request_id) from exc
        if not _finite(vector):
            raise BedrockCallError(
                CODE_NON_FINITE,
                ErrorClass.TRANSIENT,
                f"embeddings[{i}] ({etype}) holds NaN or infinite values",
                request_id=request_id,
            )
        if expected_dimension is not None and len(vector) != expected_dimension:
            raise BedrockCallError(
                CODE_DIMENSION_MISMATCH,
                ErrorClass.PERMANENT,
                f"{etype} embedding has {len(vector)} dimensions, requested {expected_dimension}",
                request_id=request_id,
            )
        tcl = item.get("truncatedCharLength")
        embeddings.append(
            Embedding(etype, vector, int(tcl) if isinstance(tcl, int | float) else None)
        )
    if expected_types is not None:
        missing = set(expected_types) - {e.embedding_type for e in embeddings}
        if missing:
            raise _malformed(f"response lacks embedding types {sorted(missing)}", request_id)
    tokens = _header(headers, HEADER_INPUT_TOKENS)
    try:
        input_tokens = int(tokens) if tokens is not None else None
    except ValueError:
        input_tokens = None
    return EmbeddingResult(
        embeddings=embeddings,
        input_tokens=input_tokens,
        request_id=request_id,
        latency_ms=latency_ms,
    )
