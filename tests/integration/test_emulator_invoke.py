"""InvokeModel through real boto3: every modality and parameter, headers, recorded requests."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from pipelines.config.schema import NOVA_MME_MODEL_ID

MODEL_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{NOVA_MME_MODEL_ID}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def request(kind: str, obj: dict[str, Any], dim: int = 1024, purpose: str = "GENERIC_INDEX") -> str:
    return json.dumps(
        {
            "schemaVersion": "nova-multimodal-embed-v1",
            "taskType": "SINGLE_EMBEDDING",
            "singleEmbeddingParams": {
                "embeddingPurpose": purpose,
                "embeddingDimension": dim,
                kind: obj,
            },
        }
    )


def invoke(client: Any, body: str, model_id: str = NOVA_MME_MODEL_ID) -> tuple[dict, dict]:
    resp = client.invoke_model(modelId=model_id, body=body)
    return json.loads(resp["body"].read()), resp


def check_vector(vec: list[float], dim: int) -> None:
    assert len(vec) == dim
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-6


@pytest.mark.parametrize("model_id", [NOVA_MME_MODEL_ID, MODEL_ARN])
def test_text_embedding_headers_and_record(
    bedrock_runtime: Any, emulator: Any, model_id: str
) -> None:
    out, resp = invoke(
        bedrock_runtime,
        request("text", {"truncationMode": "END", "value": "hello offline world"}, dim=256),
        model_id,
    )
    [entry] = out["embeddings"]
    assert entry["embeddingType"] == "TEXT"
    assert "truncatedCharLength" not in entry
    check_vector(entry["embedding"], 256)
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert resp["contentType"] == "application/json"
    assert headers["x-amzn-bedrock-input-token-count"] == "5"  # ceil(19 chars / 4)
    assert int(headers["x-amzn-bedrock-invocation-latency"]) >= 0
    assert headers["x-amzn-requestid"] == resp["ResponseMetadata"]["RequestId"]
    [rec] = emulator.emulator.requests
    assert (rec.operation, rec.status, rec.modality, rec.tokens) == ("InvokeModel", 200, "text", 5)
    assert rec.model_id == model_id
    assert rec.body["singleEmbeddingParams"]["text"]["value"] == "hello offline world"
    stats = emulator.emulator.stats()
    assert stats["by_modality"] == {"text": 1} and stats["tokens"] == 5


@pytest.mark.parametrize("mode", ["END", "START"])
def test_text_truncation(bedrock_runtime: Any, mode: str) -> None:
    # 48,000 chars (over 8,192 tokens); the longer part alone fills the 32,768 kept chars.
    big, small = "alpha " * 6000, "omega " * 2000
    text = big + small if mode == "END" else small + big
    out, resp = invoke(bedrock_runtime, request("text", {"truncationMode": mode, "value": text}))
    [entry] = out["embeddings"]
    assert entry["truncatedCharLength"] == 32768
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"] == "8192"
    kept, dropped = (
        invoke(bedrock_runtime, request("text", {"truncationMode": "NONE", "value": part}))[0]
        for part in (big[:6000], small[:6000])
    )
    v = np.array(entry["embedding"])
    assert v @ np.array(kept["embeddings"][0]["embedding"]) > 0.8
    assert v @ np.array(dropped["embeddings"][0]["embedding"]) < 0.3


def test_text_from_s3(bedrock_runtime: Any, s3: Any, bucket: str, emulator: Any) -> None:
    s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"a page of text kept in s3")
    src = {"s3Location": {"uri": f"s3://{bucket}/doc.txt", "bucketOwner": "123456789012"}}
    out, _ = invoke(bedrock_runtime, request("text", {"truncationMode": "NONE", "source": src}))
    inline, _ = invoke(
        bedrock_runtime,
        request("text", {"truncationMode": "NONE", "value": "a page of text kept in s3"}),
    )
    assert out["embeddings"][0]["embedding"] == inline["embeddings"][0]["embedding"]


@pytest.mark.parametrize("fmt", ["png", "jpeg", "gif", "webp"])
@pytest.mark.parametrize("detail", ["STANDARD_IMAGE", "DOCUMENT_IMAGE"])
def test_image_formats(
    bedrock_runtime: Any, media: Any, emulator: Any, fmt: str, detail: str
) -> None:
    data = media.image("circle", fmt)
    obj = {"format": fmt, "detailLevel": detail, "source": {"bytes": b64(data)}}
    out, resp = invoke(bedrock_runtime, request("image", obj, dim=384, purpose="IMAGE_RETRIEVAL"))
    [entry] = out["embeddings"]
    assert entry["embeddingType"] == "IMAGE"
    check_vector(entry["embedding"], 384)
    assert "x-amzn-bedrock-input-token-count" not in resp["ResponseMetadata"]["HTTPHeaders"]
    [rec] = emulator.emulator.requests
    assert rec.body["singleEmbeddingParams"]["image"]["source"]["bytes"].endswith("base64 chars>")


def test_image_from_s3_matches_inline(
    bedrock_runtime: Any, media: Any, s3: Any, bucket: str
) -> None:
    data = media.image("gradient", "jpeg")
    s3.put_object(Bucket=bucket, Key="img.jpg", Body=data)
    a, _ = invoke(
        bedrock_runtime,
        request(
            "image", {"format": "jpeg", "source": {"s3Location": {"uri": f"s3://{bucket}/img.jpg"}}}
        ),
    )
    b, _ = invoke(
        bedrock_runtime, request("image", {"format": "jpeg", "source": {"bytes": b64(data)}})
    )
    assert a == b


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_audio(bedrock_runtime: Any, media: Any, emulator: Any, fmt: str) -> None:
    data = media.audio([(2.5, [440.0])], fmt)
    out, _ = invoke(
        bedrock_runtime, request("audio", {"format": fmt, "source": {"bytes": b64(data)}}, dim=3072)
    )
    [entry] = out["embeddings"]
    assert entry["embeddingType"] == "AUDIO"
    check_vector(entry["embedding"], 3072)
    assert emulator.emulator.requests[0].tokens == 250  # 2.5 s x 100 tokens/s


@pytest.mark.parametrize(
    ("mode", "with_audio", "types"),
    [
        ("AUDIO_VIDEO_COMBINED", True, ["AUDIO_VIDEO_COMBINED"]),
        ("AUDIO_VIDEO_SEPARATE", True, ["AUDIO", "VIDEO"]),
        ("AUDIO_VIDEO_COMBINED", False, ["AUDIO_VIDEO_COMBINED"]),
        ("AUDIO_VIDEO_SEPARATE", False, ["VIDEO"]),
    ],
)
def test_video_modes(
    bedrock_runtime: Any, media: Any, mode: str, with_audio: bool, types: list[str]
) -> None:
    data = media.video(2.0, audio_parts=[(2.0, [330.0])] if with_audio else None)
    obj = {"format": "mp4", "embeddingMode": mode, "source": {"bytes": b64(data)}}
    out, _ = invoke(bedrock_runtime, request("video", obj, dim=256, purpose="VIDEO_RETRIEVAL"))
    assert sorted(e["embeddingType"] for e in out["embeddings"]) == types
    for e in out["embeddings"]:
        check_vector(e["embedding"], 256)


def test_separate_audio_matches_the_same_sound_alone(bedrock_runtime: Any, media: Any) -> None:
    parts = [(2.0, [523.0, 659.0])]
    video = media.video(2.0, audio_parts=parts)
    vid, _ = invoke(
        bedrock_runtime,
        request(
            "video",
            {
                "format": "mp4",
                "embeddingMode": "AUDIO_VIDEO_SEPARATE",
                "source": {"bytes": b64(video)},
            },
        ),
    )
    aud, _ = invoke(
        bedrock_runtime,
        request("audio", {"format": "wav", "source": {"bytes": b64(media.audio(parts))}}),
    )
    by_type = {e["embeddingType"]: np.array(e["embedding"]) for e in vid["embeddings"]}
    alone = np.array(aud["embeddings"][0]["embedding"])
    assert by_type["AUDIO"] @ alone > 0.9
    assert abs(by_type["VIDEO"] @ alone) < 0.3


def test_control_over_http(emulator: Any, bedrock_runtime: Any) -> None:
    import urllib.request

    def call(method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(emulator.bedrock_url + path, data=data, method=method)
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    assert call("GET", "/_emulator/health") == {"ok": True}
    invoke(bedrock_runtime, request("text", {"truncationMode": "END", "value": "x"}))
    assert call("GET", "/_emulator/stats")["successes"] == 1
    assert call("GET", "/_emulator/requests")[0]["operation"] == "InvokeModel"
    cfg = call(
        "POST", "/_emulator/config", {"latency_ms": 5, "quota": {"requests_per_minute": 600}}
    )
    assert cfg["latency_ms"] == 5 and cfg["quota"]["requests_per_minute"] == 600
    assert call("POST", "/_emulator/script", {"outcomes": ["ok", "ThrottlingException"]}) == {
        "pending": 2
    }
    assert call("POST", "/_emulator/reset") == {"ok": True}
    after = call("GET", "/_emulator/stats")
    assert after["requests"] == 0 and after["script_pending"] == 0
    assert call("GET", "/_emulator/config")["latency_ms"] == 0
