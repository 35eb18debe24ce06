"""Vector properties: determinism, normalisation, Matryoshka prefixes, similarity structure."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest

from pipelines.config.schema import NOVA_MME_MODEL_ID

DIMS = (256, 384, 1024, 3072)


def embed(client: Any, kind: str, obj: dict[str, Any], dim: int = 1024) -> dict[str, np.ndarray]:
    body = {
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": "GENERIC_INDEX",
            "embeddingDimension": dim,
            kind: obj,
        },
    }
    resp = client.invoke_model(modelId=NOVA_MME_MODEL_ID, body=json.dumps(body))
    out = json.loads(resp["body"].read())
    return {e["embeddingType"]: np.array(e["embedding"]) for e in out["embeddings"]}


def text(value: str) -> dict[str, Any]:
    return {"truncationMode": "END", "value": value}


def source(data: bytes) -> dict[str, Any]:
    return {"bytes": base64.b64encode(data).decode()}


@pytest.fixture
def inputs(media: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        "text": ("text", text("Matryoshka vectors nest like dolls")),
        "image": ("image", {"format": "png", "source": source(media.image("circle"))}),
        "audio": ("audio", {"format": "wav", "source": source(media.audio([(1.0, [440.0])]))}),
        "video": (
            "video",
            {
                "format": "mp4",
                "embeddingMode": "AUDIO_VIDEO_COMBINED",
                "source": source(media.video(1.0, audio_parts=[(1.0, [440.0])])),
            },
        ),
    }


@pytest.mark.parametrize("modality", ["text", "image", "audio", "video"])
def test_matryoshka_prefix_and_determinism(
    bedrock_runtime: Any, inputs: dict, modality: str
) -> None:
    kind, obj = inputs[modality]
    [(etype, full)] = embed(bedrock_runtime, kind, obj, 3072).items()
    assert abs(np.linalg.norm(full) - 1.0) < 1e-9
    for dim in DIMS:
        short = embed(bedrock_runtime, kind, obj, dim)[etype]
        prefix = full[:dim] / np.linalg.norm(full[:dim])
        assert short.shape == (dim,)
        np.testing.assert_allclose(short, prefix, rtol=0, atol=1e-12)
    assert np.array_equal(embed(bedrock_runtime, kind, obj, 3072)[etype], full)


def test_text_similarity(bedrock_runtime: Any) -> None:
    a = embed(
        bedrock_runtime,
        "text",
        text("The quick brown fox jumps over the lazy dog near the river bank"),
    )["TEXT"]
    b = embed(
        bedrock_runtime,
        "text",
        text("the quick brown fox jumped over the lazy dog near the river bank!"),
    )["TEXT"]
    c = embed(
        bedrock_runtime, "text", text("Quarterly revenue grew twelve percent on cloud services")
    )["TEXT"]
    assert a @ b > 0.8
    assert abs(a @ c) < 0.3


def test_image_similarity_survives_resize_and_reencode(bedrock_runtime: Any, media: Any) -> None:
    from PIL import Image

    png = media.image("circle", "png", size=(128, 96))
    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).resize((200, 150), Image.Resampling.LANCZOS).save(
        buf, "JPEG", quality=60
    )
    orig = embed(bedrock_runtime, "image", {"format": "png", "source": source(png)})["IMAGE"]
    resized = embed(bedrock_runtime, "image", {"format": "jpeg", "source": source(buf.getvalue())})[
        "IMAGE"
    ]
    other = embed(
        bedrock_runtime,
        "image",
        {"format": "png", "source": source(media.image("checker", size=(128, 96)))},
    )["IMAGE"]
    assert orig @ resized > 0.9
    assert abs(orig @ other) < 0.3


def test_image_exif_orientation_is_applied(bedrock_runtime: Any, media: Any) -> None:
    from PIL import Image

    upright = media.image_array("gradient", (64, 48))
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1)))  # rotated 90 deg CCW
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif)
    plain = io.BytesIO()
    Image.fromarray(upright).save(plain, "JPEG", quality=95)
    a = embed(bedrock_runtime, "image", {"format": "jpeg", "source": source(buf.getvalue())})[
        "IMAGE"
    ]
    b = embed(bedrock_runtime, "image", {"format": "jpeg", "source": source(plain.getvalue())})[
        "IMAGE"
    ]
    assert a @ b > 0.95


def test_audio_similarity(bedrock_runtime: Any, media: Any) -> None:
    def audio(parts: list, fmt: str = "wav") -> np.ndarray:
        return embed(
            bedrock_runtime, "audio", {"format": fmt, "source": source(media.audio(parts, fmt))}
        )["AUDIO"]

    chord = [(2.0, [261.6, 329.6, 392.0])]
    wav, mp3 = audio(chord), audio(chord, "mp3")
    assert wav @ mp3 > 0.9  # same sound, other codec
    assert abs(wav @ audio([(2.0, [2000.0])])) < 0.3


def test_modalities_do_not_collide(bedrock_runtime: Any, inputs: dict) -> None:
    vecs = [
        next(iter(embed(bedrock_runtime, *inputs[m]).values()))
        for m in ("text", "image", "audio", "video")
    ]
    for i in range(len(vecs)):
        for j in range(i + 1, len(vecs)):
            assert abs(vecs[i] @ vecs[j]) < 0.2


def test_images_undecoded_get_vectors_from_their_bytes(
    emulator: Any, bedrock_runtime: Any, media: Any
) -> None:
    """``image_content_features=false`` (benchmarks): the header is still checked, the vector
    follows the bytes (same bytes, same vector; any other bytes, an unrelated one)."""
    from botocore.exceptions import ClientError

    emulator.emulator.configure(image_content_features=False)
    png = media.image("circle", "png", size=(128, 96))
    again = embed(bedrock_runtime, "image", {"format": "png", "source": source(png)})["IMAGE"]
    first = embed(bedrock_runtime, "image", {"format": "png", "source": source(png)})["IMAGE"]
    other_png = media.image("circle", "png", size=(130, 96))
    other = embed(bedrock_runtime, "image", {"format": "png", "source": source(other_png)})
    assert np.allclose(first, again)
    assert abs(float(np.linalg.norm(first)) - 1.0) < 1e-6
    assert abs(float(first @ other["IMAGE"])) < 0.2
    # The declared format is still checked against the header.
    with pytest.raises(ClientError, match="not jpeg"):
        embed(bedrock_runtime, "image", {"format": "jpeg", "source": source(png)})
    emulator.emulator.configure(image_content_features=True)
    decoded = embed(bedrock_runtime, "image", {"format": "png", "source": source(png)})["IMAGE"]
    assert not np.allclose(decoded, first)
