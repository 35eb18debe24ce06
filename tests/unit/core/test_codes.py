"""Dead-letter codes: snake_case, defined once, documented in docs/dead-letter-codes.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.core import codes

DOC = Path(__file__).resolve().parents[3] / "docs" / "dead-letter-codes.md"


def documented_codes() -> list[str]:
    """The codes in the first column of the doc's tables."""
    return re.findall(r"^\| `([^`]+)` \|", DOC.read_text(), flags=re.MULTILINE)


def test_every_code_is_snake_case_and_unique() -> None:
    values = list(codes.all_codes().values())
    assert values, "no codes found"
    for value in values:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", value), value
    assert len(values) == len(set(values)), "two constants share a code"


def test_every_code_is_documented_and_every_documented_code_exists() -> None:
    documented = documented_codes()
    assert len(documented) == len(set(documented)), "a code is documented twice"
    defined = set(codes.all_codes().values())
    assert sorted(defined - set(documented)) == [], "codes missing from the doc"
    assert sorted(set(documented) - defined) == [], "documented codes that do not exist"


@pytest.mark.parametrize(
    ("service_code", "expected"),
    [
        ("ValidationException", "validation_exception"),
        ("TooManyRequestsException", "throttling_exception"),
        ("dimension_mismatch", "dimension_mismatch"),
        ("SomethingNew", "service_error"),
        ("HTTP418", "service_error"),
    ],
)
def test_service_codes_map_into_the_vocabulary(service_code: str, expected: str) -> None:
    assert codes.from_service_code(service_code) == expected
    assert set(codes.SERVICE_CODES.values()) <= set(codes.all_codes().values())
