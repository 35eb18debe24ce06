"""parse_embedding_response: vectors by type, tokens and ids from headers, malformed bodies."""

from __future__ import annotations

import json

import pytest

from pipelines.bedrock.errors import BedrockCallError, ErrorClass
from pipelines.bedrock.response import parse_embedding_response


def _vec(n: int, v: float = 0.1) -> list[float]:
    return [v] * n


def test_parse_text_response_with_truncation_and_headers() -> None:
    body = json.dumps(
        {
            "embeddings": [
                {"embeddingType": "TEXT", "embedding": _vec(256), "truncatedCharLength": 812}
            ]
        }
    ).encode()
    headers = {"x-amzn-bedrock-input-token-count": "203", "x-amzn-requestid": "rid-1"}
    res = parse_embedding_response(body, headers, expected_dimension=256, latency_ms=12.5)
    assert res.input_tokens == 203
    assert res.request_id == "rid-1"
    assert res.latency_ms == 12.5
    assert res.vector == _vec(256)
    assert res.by_type("TEXT").truncated_char_length == 812


def test_parse_audio_video_separate_in_either_order() -> None:
    for order in (("VIDEO", "AUDIO"), ("AUDIO", "VIDEO")):
        body = {
            "embeddings": [
                {"embeddingType": t, "embedding": _vec(384, i + 1.0)} for i, t in enumerate(order)
            ]
        }
        res = parse_embedding_response(
            body, {}, expected_dimension=384, expected_types=("VIDEO", "AUDIO")
        )
        assert res.by_type("VIDEO").vector[0] == order.index("VIDEO") + 1.0
        assert res.by_type("AUDIO").vector[0] == order.index("AUDIO") + 1.0
        assert res.by_type("VIDEO").truncated_char_length is None
        assert res.input_tokens is None
        with pytest.raises(ValueError):
            _ = res.vector


def test_dimension_mismatch_is_permanent() -> None:
    body = {"embeddings": [{"embeddingType": "IMAGE", "embedding": _vec(1024)}]}
    with pytest.raises(BedrockCallError) as info:
        parse_embedding_response(body, {}, expected_dimension=3072)
    assert info.value.error_class is ErrorClass.PERMANENT
    assert info.value.code == "dimension_mismatch"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b'{"embeddings": []}',
        b'{"other": 1}',
        b'{"embeddings": [{"embeddingType": "TEXT"}]}',
        b'{"embeddings": [{"embeddingType": "TEXT", "embedding": ["a"]}]}',
    ],
)
def test_unparsable_body_is_transient(body: bytes) -> None:
    with pytest.raises(BedrockCallError) as info:
        parse_embedding_response(body, {})
    assert info.value.error_class is ErrorClass.TRANSIENT
    assert info.value.code == "malformed_response"


def test_missing_expected_type_is_malformed() -> None:
    body = {"embeddings": [{"embeddingType": "VIDEO", "embedding": _vec(256)}]}
    with pytest.raises(BedrockCallError, match="AUDIO"):
        parse_embedding_response(body, {}, expected_types=("VIDEO", "AUDIO"))


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_a_vector_holding_nan_or_infinity_is_non_finite_not_malformed(token: str) -> None:
    # Not standard JSON: the fast parser refuses the body, the standard library reads it.
    body = b'{"embeddings": [{"embeddingType": "IMAGE", "embedding": [0.5, %s, 0.5]}]}' % (
        token.encode()
    )
    with pytest.raises(BedrockCallError) as info:
        parse_embedding_response(body, {})
    assert info.value.error_class is ErrorClass.TRANSIENT
    assert info.value.code == "non_finite_vector"


def test_finite_values_whose_sum_overflows_are_accepted() -> None:
    body = json.dumps(
        {"embeddings": [{"embeddingType": "IMAGE", "embedding": [1e308, 1e308, -1e308, 3]}]}
    ).encode()
    result = parse_embedding_response(body, {})
    assert result.embeddings[0].vector == [1e308, 1e308, -1e308, 3.0]
    assert all(type(x) is float for x in result.embeddings[0].vector)
