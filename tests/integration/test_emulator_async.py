"""Async segmentation end to end: start -> worker -> S3 outputs; Get/List; idempotency."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from pipelines.config.schema import NOVA_MME_MODEL_ID

ARN_RE = re.compile(r"^arn:aws:bedrock:us-east-1:123456789012:async-invoke/([a-z0-9]{12})$")


def start(
    client: Any, bucket: str, kind: str, obj: dict[str, Any], dim: int = 256, **kw: Any
) -> str:
    model_input = {
        "schemaVersion": "nova-multimodal-embed-v1",
        "taskType": "SEGMENTED_EMBEDDING",
        "segmentedEmbeddingParams": {
            "embeddingPurpose": "GENERIC_INDEX",
            "embeddingDimension": dim,
            kind: obj,
        },
    }
    resp = client.start_async_invoke(
        modelId=NOVA_MME_MODEL_ID,
        modelInput=model_input,
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/out"}},
        **kw,
    )
    return str(resp["invocationArn"])


def wait(client: Any, arn: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get_async_invoke(invocationArn=arn)
        if job["status"] != "InProgress" or time.monotonic() > deadline:
            return dict(job)
        time.sleep(0.1)


def read_json(s3: Any, uri: str) -> Any:
    bucket, _, key = uri[len("s3://") :].partition("/")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    if uri.endswith(".jsonl"):
        return [json.loads(line) for line in body.splitlines()]
    return json.loads(body)


def s3_source(s3: Any, bucket: str, key: str, data: bytes) -> dict[str, Any]:
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return {"s3Location": {"uri": f"s3://{bucket}/{key}"}}


def test_segmented_video_separate(
    bedrock_runtime: Any, s3: Any, bucket: str, media: Any, emulator: Any
) -> None:
    video = media.video(
        7.0, patterns=["gradient", "circle"], audio_parts=[(3.5, [440.0]), (3.5, [1500.0])]
    )
    src = s3_source(s3, bucket, "in/clip.mp4", video)
    obj = {
        "format": "mp4",
        "embeddingMode": "AUDIO_VIDEO_SEPARATE",
        "source": src,
        "segmentationConfig": {"durationSeconds": 2},
    }
    arn = start(bedrock_runtime, bucket, "video", obj)
    inv_id = ARN_RE.match(arn).group(1)  # type: ignore[union-attr]
    first = bedrock_runtime.get_async_invoke(invocationArn=arn)
    assert first["status"] == "InProgress"  # async_min_duration_s keeps it visible
    job = wait(bedrock_runtime, arn)
    assert job["status"] == "Completed", job.get("failureMessage")
    folder = f"s3://{bucket}/out/{inv_id}"
    assert job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"] == folder
    assert job["modelArn"].endswith(f"foundation-model/{NOVA_MME_MODEL_ID}")
    assert isinstance(job["submitTime"], datetime) and job["endTime"] >= job["submitTime"]

    result = read_json(s3, f"{folder}/segmented-embedding-result.json")
    assert result["sourceFileUri"] == src["s3Location"]["uri"]
    assert result["embeddingDimension"] == 256
    by_type = {r["embeddingType"]: r for r in result["embeddingResults"]}
    assert set(by_type) == {"VIDEO", "AUDIO"}
    assert by_type["VIDEO"]["outputFileUri"] == f"{folder}/embedding-video.jsonl"
    assert all(r["status"] == "SUCCESS" for r in by_type.values())
    read_json(s3, f"{folder}/manifest.json")

    video_rows = read_json(s3, f"{folder}/embedding-video.jsonl")
    audio_rows = read_json(s3, f"{folder}/embedding-audio.jsonl")
    for rows in (video_rows, audio_rows):
        spans = [
            (r["segmentMetadata"]["segmentStartSeconds"], r["segmentMetadata"]["segmentEndSeconds"])
            for r in rows
        ]
        assert spans == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 7.0)]
        assert [r["segmentMetadata"]["segmentIndex"] for r in rows] == [0, 1, 2, 3]
        assert all(r["status"] == "SUCCESS" and len(r["embedding"]) == 256 for r in rows)
    # The first and last segments differ in picture and sound; neighbours within a half agree.
    v = [np.array(r["embedding"]) for r in video_rows]
    a = [np.array(r["embedding"]) for r in audio_rows]
    assert v[0] @ v[1] > v[0] @ v[3]
    assert a[0] @ a[1] > 0.8 and a[0] @ a[3] < 0.3
    [rec] = [r for r in emulator.emulator.requests if r.operation == "StartAsyncInvoke"]
    assert rec.model_id == NOVA_MME_MODEL_ID
    assert rec.body["modelInput"]["segmentedEmbeddingParams"]["video"]["segmentationConfig"] == {
        "durationSeconds": 2
    }


def test_segmented_audio_matches_sync_excerpt(
    bedrock_runtime: Any, s3: Any, bucket: str, media: Any
) -> None:
    parts = [(5.0, [261.6, 329.6, 392.0]), (5.0, [2000.0])]
    src = s3_source(s3, bucket, "in/song.wav", media.audio(parts))
    arn = start(bedrock_runtime, bucket, "audio", {"format": "wav", "source": src})  # default 5 s
    job = wait(bedrock_runtime, arn)
    assert job["status"] == "Completed", job.get("failureMessage")
    rows = read_json(
        s3, job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"] + "/embedding-audio.jsonl"
    )
    assert [
        (r["segmentMetadata"]["segmentStartSeconds"], r["segmentMetadata"]["segmentEndSeconds"])
        for r in rows
    ] == [(0.0, 5.0), (5.0, 10.0)]
    import base64

    excerpt = media.audio(parts[:1], "mp3")  # the first window, cut and re-encoded
    body = {
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": "GENERIC_INDEX",
            "embeddingDimension": 256,
            "audio": {"format": "mp3", "source": {"bytes": base64.b64encode(excerpt).decode()}},
        },
    }
    out = json.loads(
        bedrock_runtime.invoke_model(modelId=NOVA_MME_MODEL_ID, body=json.dumps(body))[
            "body"
        ].read()
    )
    sync = np.array(out["embeddings"][0]["embedding"])
    assert sync @ np.array(rows[0]["embedding"]) > 0.8
    assert sync @ np.array(rows[1]["embedding"]) < 0.3


def test_segmented_text(bedrock_runtime: Any, s3: Any, bucket: str) -> None:
    words = [f"word{i % 97}" for i in range(900)]
    doc = " ".join(words)  # ~6,000 chars
    src = s3_source(s3, bucket, "in/doc.txt", doc.encode())
    obj = {"truncationMode": "END", "source": src, "segmentationConfig": {"maxLengthChars": 1000}}
    job = wait(bedrock_runtime, start(bedrock_runtime, bucket, "text", obj, dim=384))
    assert job["status"] == "Completed", job.get("failureMessage")
    rows = read_json(
        s3, job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"] + "/embedding-text.jsonl"
    )
    assert len(rows) >= 6
    pos = 0
    for i, r in enumerate(rows):
        meta = r["segmentMetadata"]
        start_c, end_c = meta["segmentStartCharPosition"], meta["segmentEndCharPosition"]
        assert meta["segmentIndex"] == i and start_c >= pos and end_c - start_c <= 1000
        segment = doc[start_c:end_c]
        # Cut at word boundaries: no word is split.
        assert segment.split() == doc[start_c:end_c].strip().split()
        assert (start_c == 0 or doc[start_c - 1] == " ") and (
            end_c == len(doc) or doc[end_c] == " "
        )
        assert len(r["embedding"]) == 384
        pos = end_c
    assert pos == len(doc)


def test_segmentation_config_is_validated(bedrock_runtime: Any, bucket: str) -> None:
    for kind, obj, field in [
        (
            "text",
            {"truncationMode": "END", "value": "x", "segmentationConfig": {"maxLengthChars": 799}},
            "maxLengthChars",
        ),
        (
            "audio",
            {
                "format": "wav",
                "source": {"s3Location": {"uri": "s3://bkt/k.wav"}},
                "segmentationConfig": {"durationSeconds": 31},
            },
            "durationSeconds",
        ),
        (
            "image",
            {
                "format": "png",
                "source": {"s3Location": {"uri": "s3://bkt/k.png"}},
                "segmentationConfig": {},
            },
            "segmentationConfig",
        ),
    ]:
        with pytest.raises(ClientError) as info:
            start(bedrock_runtime, bucket, kind, obj)
        assert info.value.response["Error"]["Code"] == "ValidationException"
        assert field in info.value.response["Error"]["Message"]


def test_missing_source_fails_the_job(bedrock_runtime: Any, bucket: str) -> None:
    obj = {"format": "png", "source": {"s3Location": {"uri": f"s3://{bucket}/missing.png"}}}
    job = wait(bedrock_runtime, start(bedrock_runtime, bucket, "image", obj))
    assert job["status"] == "Failed"
    assert "not found" in job["failureMessage"]


def test_image_job_and_idempotency(
    bedrock_runtime: Any, s3: Any, bucket: str, media: Any, emulator: Any
) -> None:
    src = s3_source(s3, bucket, "in/a.png", media.image("circle"))
    obj = {"format": "png", "source": src}
    arn = start(bedrock_runtime, bucket, "image", obj, clientRequestToken="token-1")
    assert start(bedrock_runtime, bucket, "image", obj, clientRequestToken="token-1") == arn
    with pytest.raises(ClientError) as info:
        start(bedrock_runtime, bucket, "image", obj, dim=1024, clientRequestToken="token-1")
    assert info.value.response["Error"]["Code"] == "ConflictException"
    job = wait(bedrock_runtime, arn)
    image = read_json(
        s3, job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"] + "/embedding-image.json"
    )
    assert image["status"] == "SUCCESS" and len(image["embedding"]) == 256
    emulator.emulator.script(["AsyncJobFailure"])
    failed = wait(bedrock_runtime, start(bedrock_runtime, bucket, "image", obj))
    assert failed["status"] == "Failed" and failed["failureMessage"]


def test_list_async_invokes(
    bedrock_runtime: Any, s3: Any, bucket: str, media: Any, emulator: Any
) -> None:
    src = s3_source(s3, bucket, "in/a.png", media.image("gradient"))
    arns = [
        start(bedrock_runtime, bucket, "image", {"format": "png", "source": src}) for _ in range(3)
    ]
    bad = start(
        bedrock_runtime,
        bucket,
        "image",
        {"format": "png", "source": {"s3Location": {"uri": f"s3://{bucket}/x.png"}}},
    )
    for arn in [*arns, bad]:
        wait(bedrock_runtime, arn)
    everything = bedrock_runtime.list_async_invokes()["asyncInvokeSummaries"]
    assert [s["invocationArn"] for s in everything] == [bad, *arns[::-1]]  # newest first
    completed = bedrock_runtime.list_async_invokes(statusEquals="Completed", sortOrder="Ascending")
    assert [s["invocationArn"] for s in completed["asyncInvokeSummaries"]] == arns
    failed = bedrock_runtime.list_async_invokes(statusEquals="Failed")["asyncInvokeSummaries"]
    assert [s["invocationArn"] for s in failed] == [bad]
    page1 = bedrock_runtime.list_async_invokes(maxResults=2, sortOrder="Ascending")
    page2 = bedrock_runtime.list_async_invokes(
        maxResults=2, sortOrder="Ascending", nextToken=page1["nextToken"]
    )
    assert [
        s["invocationArn"] for s in page1["asyncInvokeSummaries"] + page2["asyncInvokeSummaries"]
    ] == [*arns, bad]
    assert "nextToken" not in page2
    later = datetime.now(UTC) + timedelta(hours=1)
    assert bedrock_runtime.list_async_invokes(submitTimeAfter=later)["asyncInvokeSummaries"] == []
    assert (
        len(bedrock_runtime.list_async_invokes(submitTimeBefore=later)["asyncInvokeSummaries"]) == 4
    )
    paginated = [
        s
        for page in bedrock_runtime.get_paginator("list_async_invokes").paginate(
            PaginationConfig={"PageSize": 3}
        )
        for s in page["asyncInvokeSummaries"]
    ]
    assert len(paginated) == 4
    with pytest.raises(ClientError) as info:
        bedrock_runtime.get_async_invoke(
            invocationArn="arn:aws:bedrock:us-east-1:123456789012:async-invoke/zzzzzzzzzzzz"
        )
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert emulator.emulator.stats()["async_jobs"] == {"InProgress": 0, "Completed": 3, "Failed": 1}


def test_text_and_media_cutting_rules() -> None:
    from nova_devkit.emulator.engine import cut_text, media_windows

    text = "aaaa bbbb cccc  dddd " + "x" * 12
    spans = cut_text(text, 10)
    assert [text[a:b] for a, b in spans] == ["aaaa bbbb", "cccc  dddd", "x" * 10, "xx"]
    assert media_windows(10.02, 5, 0.1) == [(0.0, 5.0), (5.0, 10.02)]
    assert media_windows(2.0, 5, 0.1) == [(0.0, 2.0)]
