"""Faults at the Bedrock wire, injected by the local endpoint, against the real job.

Each case scripts what the endpoint answers after the job's preflight call, runs the backfill and
checks what the job did (counted at the endpoint and read back from the collection), plus the
checks every fault case makes (:func:`tests.faults.wire_harness.check_run`).
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from tests.faults.wire_harness import (
    check_run,
    dead_codes,
    invoke_calls,
    run_job,
    text_manifest,
)

pytestmark = [pytest.mark.integration]

ASSETS, SEGMENTS = 6, 12  # text_manifest: six notes of two segments each


def _script(eps: Endpoints, *outcomes: object) -> None:
    # The first call is the job's preflight: it is answered normally.
    eps.emulator.script(["ok", *outcomes])


def test_a_throttling_storm_longer_than_the_attempts_is_waited_out(
    endpoint: Endpoints, tmp_path: Path
) -> None:
    text_manifest(tmp_path)
    _script(endpoint, *["ThrottlingException"] * 30)
    result = run_job(tmp_path, endpoint, "bedrock.max_attempts=3")
    held = check_run(result, tmp_path, ASSETS, exit_code=0)
    rep = result.report
    assert rep["embedded"] == ASSETS and rep["dead_lettered"] == 0
    assert len(held) == ASSETS
    # 30 throttles in a row, ten times what one segment may spend on other errors: all waited.
    assert invoke_calls(endpoint) == 1 + SEGMENTS + 30 == rep["bedrock_calls"]
    assert rep["throttled"] == 30


def test_throttling_past_the_run_deadline_dead_letters_as_transient(
    endpoint: Endpoints, tmp_path: Path
) -> None:
    text_manifest(tmp_path)
    _script(endpoint, *["ThrottlingException"] * 100_000)
    result = run_job(tmp_path, endpoint, "limits.run_deadline_s=2")
    check_run(result, tmp_path, ASSETS, exit_code=0)
    assert result.report["dead_lettered"] == ASSETS
    assert dead_codes(result) == {"throttling_exception": SEGMENTS}
    dead = pq.read_table(result.dead_letter_path).to_pylist()
    assert all("run deadline" in d["message"] for d in dead)
    assert result.report["duration_s"] < 60


def test_a_used_up_service_quota_is_waited_out(endpoint: Endpoints, tmp_path: Path) -> None:
    text_manifest(tmp_path)
    _script(endpoint, *["ServiceQuotaExceededException"] * 20)
    result = run_job(tmp_path, endpoint, "bedrock.max_attempts=3")
    check_run(result, tmp_path, ASSETS, exit_code=0)
    assert result.report["embedded"] == ASSETS and result.report["dead_lettered"] == 0
    assert invoke_calls(endpoint) == 1 + SEGMENTS + 20


def test_a_5xx_storm_dead_letters_after_the_attempts(endpoint: Endpoints, tmp_path: Path) -> None:
    text_manifest(tmp_path)
    _script(endpoint, *["InternalServerException", "ServiceUnavailableException"] * SEGMENTS * 2)
    result = run_job(tmp_path, endpoint, "bedrock.max_attempts=4")
    check_run(result, tmp_path, ASSETS, exit_code=0)
    # Exactly max_attempts calls per segment, then a transient dead letter (the next run retries).
    assert invoke_calls(endpoint) == 1 + SEGMENTS * 4 == result.report["bedrock_calls"]
    codes = dead_codes(result)
    assert sum(codes.values()) == SEGMENTS
    assert set(codes) <= {"internal_server_exception", "service_unavailable_exception"}


@pytest.mark.parametrize(
    "fault",
    [
        {"code": "ok", "delay_ms": 1500},  # slower than bedrock.read_timeout_s
        "DroppedConnection",  # the connection is reset without an answer
        "ModelNotReadyException",
    ],
    ids=["timeout", "connection-reset", "model-not-ready"],
)
def test_transient_faults_are_retried_and_nothing_is_lost(
    endpoint: Endpoints, tmp_path: Path, fault: object
) -> None:
    text_manifest(tmp_path)
    _script(endpoint, *[fault] * 4)
    result = run_job(tmp_path, endpoint, "bedrock.read_timeout_s=0.5")
    held = check_run(result, tmp_path, ASSETS, exit_code=0)
    assert result.report["embedded"] == ASSETS and len(held) == ASSETS
    assert result.report["bedrock_calls"] == 1 + SEGMENTS + 4
    assert result.report["retries"] == 4
    # A request the client gave up on is recorded when the endpoint answers it (or not at all).
    if isinstance(fault, dict) and fault.get("delay_ms"):
        # The endpoint answers the abandoned requests 1.5 s late, possibly after the run ended:
        # wait for those answers here, or they land in the next case's records (measured: 21).
        deadline = time.monotonic() + 30
        while invoke_calls(endpoint) < 1 + SEGMENTS + 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert 1 + SEGMENTS <= invoke_calls(endpoint) <= 1 + SEGMENTS + 4


@pytest.mark.parametrize(
    ("fault", "code", "tries"),
    [
        ("MalformedBody", "malformed_response", 3),  # truncated JSON
        ("NanVector", "non_finite_vector", 3),
        ("WrongDimension", "dimension_mismatch", 1),
    ],
)
def test_malformed_answers_are_dead_lettered_after_a_few_paid_tries(
    endpoint: Endpoints, tmp_path: Path, fault: str, code: str, tries: int
) -> None:
    text_manifest(tmp_path)
    _script(endpoint, *[fault] * 1000)
    result = run_job(tmp_path, endpoint, "bedrock.max_attempts=8")
    held = check_run(result, tmp_path, ASSETS, exit_code=0)
    assert held == {}  # nothing of a bad answer reaches the collection
    assert dead_codes(result) == {code: SEGMENTS}
    # Bounded (not max_attempts, not forever), and every paid call is in the report.
    assert invoke_calls(endpoint) == 1 + SEGMENTS * tries == result.report["bedrock_calls"]
    assert result.report["dead_letters_by_code"] == {code: SEGMENTS}
