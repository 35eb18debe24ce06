"""Point ids, fingerprints and payloads."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core.ids import (
    POINT_ID_NAMESPACE,
    build_payload,
    fingerprint,
    fingerprint_parts,
    point_id,
)
from pipelines.modalities import names

MODALITIES = names()

# ---- point ids -------------------------------------------------------------------------------


def test_point_id_is_pinned() -> None:
    # Changing the namespace or the key format would orphan every stored point.
    assert str(POINT_ID_NAMESPACE) == "dd33ee75-84a4-411e-b3f6-de45a96ddd4d"
    assert point_id("doc-1.pdf", 3, "IMAGE") == "58cf5a10-b07f-5a3f-8ed5-62bca67e1427"


def test_point_id_is_a_uuid5_of_the_documented_key() -> None:
    pid = point_id("a", 0, "TEXT")
    assert uuid.UUID(pid).version == 5
    assert pid == str(uuid.uuid5(POINT_ID_NAMESPACE, "a#0#TEXT"))
    assert point_id("a", np.int64(0), "TEXT") == pid  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "other", [("b", 0, "TEXT"), ("a", 1, "TEXT"), ("a", 0, "AUDIO"), ("a#0", 0, "TEXT")]
)
def test_point_id_differs_per_component(other: tuple[str, int, str]) -> None:
    assert point_id(*other) != point_id("a", 0, "TEXT")


# ---- fingerprints ----------------------------------------------------------------------------

EMB = EmbeddingConfig()
SEG = SegmentationConfig()


def _changed(emb: EmbeddingConfig = EMB, seg: SegmentationConfig = SEG) -> set[str]:
    return {m for m in MODALITIES if fingerprint(emb, seg, m) != fingerprint(EMB, SEG, m)}


def test_fingerprint_is_stable_and_readable() -> None:
    fp = fingerprint(EMB, SEG, "image")
    assert fp == fingerprint(EmbeddingConfig(), SegmentationConfig(), "image")
    digest, readable = fp.split("|", 1)
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert "model_id=amazon.nova-2-multimodal-embeddings-v1:0" in readable
    assert "image_detail_level=STANDARD_IMAGE" in readable
    assert len({fingerprint(EMB, SEG, m) for m in MODALITIES}) == len(MODALITIES)


@pytest.mark.parametrize(
    ("emb", "seg", "expected"),
    [
        (replace(EMB, dimension=3072), SEG, set(MODALITIES)),
        (replace(EMB, model_id="other-model"), SEG, set(MODALITIES)),
        (replace(EMB, index_purpose="CLUSTERING"), SEG, set(MODALITIES)),
        (replace(EMB, query_purpose="DOCUMENT_RETRIEVAL"), SEG, set()),
        (replace(EMB, image_detail_level="DOCUMENT_IMAGE"), SEG, {"image"}),
        (replace(EMB, document_detail_level="STANDARD_IMAGE"), SEG, {"document"}),
        (replace(EMB, video_embedding_mode="AUDIO_VIDEO_SEPARATE"), SEG, {"video"}),
        (replace(EMB, text_truncation_mode="START"), SEG, {"text"}),
        (EMB, replace(SEG, pdf_dpi=200), {"document"}),
        (EMB, replace(SEG, text_max_chars=1000), {"text"}),
        (EMB, replace(SEG, audio_window_s=10.0), {"audio"}),
        (EMB, replace(SEG, video_window_s=10.0), {"video"}),
        (EMB, replace(SEG, image_max_side=1024), {"image"}),
        (EMB, replace(SEG, image_max_pixels=10), set()),
        (EMB, replace(SEG, service_duration_s=10), set()),  # unused in local mode
        (EMB, replace(SEG, mode="service"), set(MODALITIES)),
        (EMB, replace(SEG, audio_window_s=30), set()),  # 30 == 30.0
    ],
)
def test_fingerprint_covers_what_changes_vectors(
    emb: EmbeddingConfig, seg: SegmentationConfig, expected: set[str]
) -> None:
    assert _changed(emb, seg) == expected


def test_document_text_mode_adds_text_parameters() -> None:
    text_pdf = replace(SEG, pdf_mode="text")
    parts = fingerprint_parts(EMB, text_pdf, "document")
    assert {"seg.text_max_chars", "text_truncation_mode"} <= set(parts)
    assert "seg.text_max_chars" not in fingerprint_parts(EMB, SEG, "document")


def test_unclassified_new_parameters_count_everywhere() -> None:
    from dataclasses import dataclass

    @dataclass
    class FutureEmbedding(EmbeddingConfig):
        new_knob: int = 1

    parts = fingerprint_parts(FutureEmbedding(), SEG, "audio")
    assert parts["new_knob"] == 1


def test_fingerprint_rejects_unknown_modality() -> None:
    with pytest.raises(ValueError, match="hologram"):
        fingerprint(EMB, SEG, "hologram")


# ---- payloads --------------------------------------------------------------------------------


def _row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "asset_id": "talk.mp4",
        "uri": "s3://corpus/talk.mp4",
        "modality": "video",
        "content_version": "etag:abc",
        "metadata": json.dumps({"speaker": "ada", "asset_id": "spoof"}),
        "label": None,
        "payload": json.dumps({"year": 2024, "speaker": "from-column"}),
        "segment_index": np.int64(2),
        "segment_count": 5,
        "page": None,
        "start_s": np.float64(60.0),
        "end_s": 90.0,
        "char_start": None,
        "char_end": float("nan"),
        "embedding_type": "AUDIO_VIDEO_COMBINED",
        "vector": [0.1, 0.2],
    }
    row.update(overrides)
    return row


def test_payload_has_reserved_keys_and_only_set_positions() -> None:
    payload = build_payload(_row(), "fp")
    assert payload == {
        "asset_id": "talk.mp4",
        "uri": "s3://corpus/talk.mp4",
        "modality": "video",
        "segment_index": 2,
        "segment_count": 5,
        "embedding_type": "AUDIO_VIDEO_COMBINED",
        "start_s": 60.0,
        "end_s": 90.0,
        "content_version": "etag:abc",
        "fingerprint": "fp",
        "metadata": {"speaker": "ada", "asset_id": "spoof", "year": 2024},
    }
    assert type(payload["segment_index"]) is int
    assert type(payload["start_s"]) is float
    json.dumps(payload)  # plain Python values only


def test_user_metadata_never_shadows_reserved_keys() -> None:
    payload = build_payload(_row(), "fp")
    assert payload["asset_id"] == "talk.mp4"
    assert payload["metadata"]["asset_id"] == "spoof"


def test_payload_without_user_metadata() -> None:
    payload = build_payload(
        _row(metadata=None, payload=None, label="cats", page=3, start_s=None, end_s=None), "fp"
    )
    assert "metadata" not in payload
    assert payload["label"] == "cats"
    assert payload["page"] == 3
    assert "start_s" not in payload


def test_payload_accepts_metadata_dict_and_rejects_non_objects() -> None:
    assert build_payload(_row(metadata={"k": 1}, payload=None), "fp")["metadata"] == {"k": 1}
    with pytest.raises(ValueError, match="metadata"):
        build_payload(_row(metadata="[1]"), "fp")
