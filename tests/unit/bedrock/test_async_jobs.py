"""Async jobs: polling with backoff, pagination, and reading the S3 outputs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions as bce
import pytest
from moto import mock_aws

from pipelines.bedrock.async_jobs import (
    AsyncJobFailed,
    AsyncJobTimeout,
    NovaAsyncJobs,
    PollStats,
    read_segmented_results,
    request_token,
)
from pipelines.bedrock.errors import BedrockCallError
from pipelines.bedrock.request import EmbeddingRequest

ARN = "arn:aws:bedrock:us-east-1:123456789012:async-invoke/abcdef012345"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


class Runtime:
    def __init__(self, statuses: list[Any]) -> None:
        self.statuses = statuses
        self.started: list[dict[str, Any]] = []

    def get_async_invoke(self, invocationArn: str) -> dict[str, Any]:
        s = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if isinstance(s, BaseException):
            raise s
        out = {"s3OutputDataConfig": {"s3Uri": "s3://b-1/out/abcdef012345"}}
        return {
            "invocationArn": invocationArn,
            "status": s,
            "outputDataConfig": out,
            "failureMessage": "bad input" if s == "Failed" else None,
        }

    def start_async_invoke(self, **kw: Any) -> dict[str, Any]:
        self.started.append(kw)
        return {"invocationArn": ARN}


def test_wait_backs_off_and_returns_completed() -> None:
    clock = FakeClock()
    jobs = NovaAsyncJobs(
        Runtime(["InProgress"] * 6 + ["Completed"]), sleep=clock.sleep, clock=clock
    )
    status = jobs.wait(ARN, poll_min_s=1, poll_max_s=3, timeout_s=100)
    assert status.status == "Completed"
    assert status.output_s3_uri == "s3://b-1/out/abcdef012345"
    assert clock.sleeps == [1, 1.5, 2.25, 3, 3, 3]


def test_wait_raises_failed_with_message() -> None:
    clock = FakeClock()
    jobs = NovaAsyncJobs(Runtime(["InProgress", "Failed"]), sleep=clock.sleep, clock=clock)
    with pytest.raises(AsyncJobFailed) as info:
        jobs.wait(ARN, 1, 2, 10)
    assert info.value.failure_message == "bad input"


def test_wait_times_out() -> None:
    clock = FakeClock()
    jobs = NovaAsyncJobs(Runtime(["InProgress"]), sleep=clock.sleep, clock=clock)
    with pytest.raises(AsyncJobTimeout):
        jobs.wait(ARN, 1, 4, 10)
    assert clock.now == pytest.approx(10)


def _ce(code: str, status: int) -> bce.ClientError:
    return bce.ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetAsyncInvoke"
    )


def test_wait_rides_out_throttled_polls_but_not_permanent_errors() -> None:
    clock = FakeClock()
    stats = PollStats()
    rt = Runtime(
        [_ce("ThrottlingException", 429), _ce("InternalServerException", 500), "Completed"]
    )
    NovaAsyncJobs(rt, sleep=clock.sleep, clock=clock).wait(ARN, 1, 2, 10, stats=stats)
    assert (stats.polls, stats.throttles, stats.errors) == (3, 1, 1)
    rt = Runtime([_ce("ResourceNotFoundException", 404)])
    with pytest.raises(BedrockCallError):
        NovaAsyncJobs(rt, sleep=clock.sleep, clock=clock).wait(ARN, 1, 2, 10)


def test_start_sends_model_input_and_token() -> None:
    rt = Runtime(["Completed"])
    req = EmbeddingRequest.for_text(s3_uri="s3://b-1/t.txt").segmented(max_length_chars=900)
    arn = NovaAsyncJobs(rt, "m").start_segmented(req, "s3://b-1/out", client_request_token="t1")
    assert arn == ARN
    [kw] = rt.started
    assert kw["modelId"] == "m"
    assert kw["modelInput"] == req.to_model_input()
    assert kw["outputDataConfig"] == {"s3OutputDataConfig": {"s3Uri": "s3://b-1/out"}}
    assert kw["clientRequestToken"] == "t1"
    with pytest.raises(ValueError):
        NovaAsyncJobs(rt).start_segmented(req, "b-1/out")


def test_request_token_is_deterministic() -> None:
    assert request_token("a", "b") == request_token("a", "b")
    assert request_token("a", "b") != request_token("ab", "")


class Pages:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def list_async_invokes(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(kw)
        page = int(kw.get("nextToken", "0"))
        items = [
            {
                "invocationArn": f"{ARN}{page}{i}",
                "status": "Completed",
                "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://b/o"}},
            }
            for i in range(2)
        ]
        return {"asyncInvokeSummaries": items, **({"nextToken": str(page + 1)} if page < 2 else {})}


def test_list_jobs_paginates() -> None:
    pages = Pages()
    jobs = list(NovaAsyncJobs(pages).list_jobs("Completed", page_size=2))
    assert len(jobs) == 6
    assert [c.get("nextToken") for c in pages.calls] == [None, "1", "2"]
    assert all(c["statusEquals"] == "Completed" for c in pages.calls)
    assert len(list(NovaAsyncJobs(Pages()).list_jobs(max_items=3))) == 3


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="b-1")
        yield client


def _put(s3: Any, key: str, body: Any) -> None:
    data = body if isinstance(body, str) else json.dumps(body)
    s3.put_object(Bucket="b-1", Key=key, Body=data.encode())


def test_read_text_outputs(s3: Any) -> None:
    base = "out/abc123"
    _put(
        s3,
        f"{base}/segmented-embedding-result.json",
        {
            "sourceFileUri": "s3://b-1/in.txt",
            "embeddingDimension": 3,
            "embeddingResults": [
                {
                    "embeddingType": "TEXT",
                    "status": "PARTIAL_SUCCESS",
                    "outputFileUri": f"s3://b-1/{base}/embedding-text.jsonl",
                }
            ],
        },
    )
    lines = [
        {
            "embedding": [0.1, 0.2, 0.3],
            "status": "SUCCESS",
            "segmentMetadata": {
                "segmentIndex": 0,
                "segmentStartCharPosition": 0,
                "segmentEndCharPosition": 900,
                "truncatedCharLength": 850,
            },
        },
        {
            "status": "FAILURE",
            "failureReason": "RAI_VIOLATION_INPUT_TEXT_DEFLECTION",
            "message": "blocked",
            "segmentMetadata": {
                "segmentIndex": 1,
                "segmentStartCharPosition": 900,
                "segmentEndCharPosition": 1500,
            },
        },
    ]
    _put(s3, f"{base}/embedding-text.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    res = read_segmented_results(f"s3://b-1/{base}/", s3)
    assert res.embedding_dimension == 3 and res.source_file_uri == "s3://b-1/in.txt"
    ok, bad = res.segments
    assert (ok.embedding_type, ok.segment_index, ok.start_char, ok.end_char) == ("TEXT", 0, 0, 900)
    assert ok.truncated_char_length == 850 and ok.ok and ok.vector == [0.1, 0.2, 0.3]
    assert not bad.ok and bad.failure_reason == "RAI_VIOLATION_INPUT_TEXT_DEFLECTION"
    assert bad.message == "blocked" and bad.start_char == 900


def test_read_separate_audio_video_outputs_without_file_uris(s3: Any) -> None:
    base = "out/vid"
    _put(
        s3,
        f"{base}/segmented-embedding-result.json",
        {
            "embeddingDimension": 2,
            "embeddingResults": [
                {"embeddingType": "VIDEO", "status": "SUCCESS"},
                {"embeddingType": "AUDIO", "status": "SUCCESS"},
            ],
        },
    )
    for name, v in (("embedding-video.jsonl", 1.0), ("embedding-audio.jsonl", 2.0)):
        _put(
            s3,
            f"{base}/{name}",
            "\n".join(
                json.dumps(
                    {
                        "embedding": [v, v],
                        "status": "SUCCESS",
                        "segmentMetadata": {
                            "segmentIndex": i,
                            "segmentStartSeconds": 5.0 * i,
                            "segmentEndSeconds": 5.0 * i + 5,
                        },
                    }
                )
                for i in range(2)
            ),
        )
    res = read_segmented_results(f"s3://b-1/{base}", s3)
    by = {(s.embedding_type, s.segment_index): s for s in res.segments}
    assert set(by) == {("VIDEO", 0), ("VIDEO", 1), ("AUDIO", 0), ("AUDIO", 1)}
    assert by["AUDIO", 1].vector == [2.0, 2.0]
    assert (by["VIDEO", 1].start_s, by["VIDEO", 1].end_s) == (5.0, 10.0)


def test_missing_result_file_is_an_error(s3: Any) -> None:
    with pytest.raises(BedrockCallError):
        read_segmented_results("s3://b-1/nothing-here", s3)
