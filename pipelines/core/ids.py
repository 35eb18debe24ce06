"""Point ids, embedding fingerprints and Qdrant payloads.

- :func:`point_id` is deterministic, so a re-run overwrites the same points instead of adding
  duplicates.
- :func:`fingerprint` says which model and parameters produced a vector. It covers the model id,
  every embedding parameter that changes the stored vectors of that modality, and the segmentation
  parameters of that modality; a change to any of them changes the fingerprint (and makes the
  planner re-embed), while a change that cannot affect the modality (e.g. ``pdf_dpi`` for audio)
  does not. ``query_purpose`` is left out: it is only used at query time. A parameter added to the
  config dataclasses later and not yet classified here counts for every modality (the safe side).
- :func:`build_payload` builds the payload documented in ``docs/architecture.md``.

User metadata (the manifest's ``metadata`` JSON object and its unknown columns, kept in the row's
``payload`` JSON) is **nested** under the payload key ``metadata``, never merged at the top level:
a user key can then never shadow a reserved key such as ``asset_id``, and reserved keys added later
cannot break existing user data. Filter on it with nested keys (``metadata.year``). When the same
key is in both, the ``metadata`` column wins over an unknown column.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core.rows import POSITION_COLUMNS, SEGMENT
from pipelines.modalities import Registry, current

# Fixed for the life of the project: changing it changes every point id.
POINT_ID_NAMESPACE = uuid.UUID("dd33ee75-84a4-411e-b3f6-de45a96ddd4d")

FINGERPRINT_VERSION = 1

# Top-level payload keys the pipeline owns.
RESERVED_PAYLOAD_KEYS = (
    "asset_id",
    "uri",
    "modality",
    "segment_index",
    "segment_count",
    "embedding_type",
    "page",
    "start_s",
    "end_s",
    "char_start",
    "char_end",
    "content_version",
    "fingerprint",
    "label",
    "metadata",
)
_POSITIONS: dict[str, type] = {
    name: float if pa.types.is_floating(SEGMENT.schema.field(name).type) else int
    for name in POSITION_COLUMNS
}

# Embedding parameters that change every modality's vectors; each modality adds its own
# (``Modality.fingerprint_fields``). Fields no modality classifies (new ones) count everywhere.
_EMBEDDING_COMMON = ("model_id", "index_purpose", "dimension")
_EMBEDDING_IGNORED = ("query_purpose",)
# image_max_pixels only rejects decompression bombs; it never changes what is sent.
_SEGMENTATION_IGNORED = ("image_max_pixels",)


def point_id(
    asset_id: str, segment_index: int, embedding_type: str, content_version: str | None = None
) -> str:
    """The Qdrant point id of one embedding of one segment of one version of an asset (a UUID
    string). The version is part of the id so that a changed asset's new points sit beside the
    old ones until the new version is complete; rows without a version keep the plain id."""
    name = f"{asset_id}#{int(segment_index)}#{embedding_type}"
    if content_version:
        name += f"#{content_version}"
    return str(uuid.uuid5(POINT_ID_NAMESPACE, name))


def _canonical(value: Any) -> Any:
    # 30 and 30.0 must fingerprint the same (YAML may give either).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def fingerprint_parts(
    emb: EmbeddingConfig,
    seg: SegmentationConfig,
    modality: str,
    modalities: Registry | None = None,
) -> dict[str, Any]:
    """The parameters that :func:`fingerprint` covers for ``modality``, in a stable order."""
    registry = modalities or current()
    if modality not in registry:
        raise ValueError(f"unknown modality {modality!r}; expected one of {sorted(registry)}")
    own_emb, own_seg = registry[modality].fingerprint_fields(seg)
    known_emb = {*_EMBEDDING_COMMON, *_EMBEDDING_IGNORED}
    known_seg = {*_SEGMENTATION_IGNORED, "mode"}
    for m in registry.values():
        known_emb.update(m.embedding_fields)
        known_seg.update(m.segmentation_keys)
    # Text truncation is classified by the text modality (and documents sent as text).
    known_emb.add("text_truncation_mode")
    emb_values = dataclasses.asdict(emb)
    emb_names = [*_EMBEDDING_COMMON, *own_emb, *sorted(set(emb_values) - known_emb)]
    seg_values = dataclasses.asdict(seg)
    seg_names = [*own_seg, *sorted(set(seg_values) - known_seg)]
    parts: dict[str, Any] = {"v": FINGERPRINT_VERSION, "modality": modality}
    parts.update({name: _canonical(emb_values[name]) for name in emb_names})
    parts.update({f"seg.{name}": _canonical(seg_values[name]) for name in seg_names})
    return parts


def fingerprint(
    emb: EmbeddingConfig,
    seg: SegmentationConfig,
    modality: str,
    modalities: Registry | None = None,
) -> str:
    """``"<16 hex of sha256>|<readable parameters>"`` for vectors of ``modality``.

    Compare fingerprints as whole strings; the readable part is there for people.
    """
    parts = fingerprint_parts(emb, seg, modality, modalities)
    digest = hashlib.sha256(
        json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    readable = ";".join(f"{k}={v}" for k, v in parts.items())
    return f"{digest[:16]}|{readable}"


def _plain(value: Any) -> Any:
    """numpy / pyarrow scalars -> Python values (payloads are serialised as JSON)."""
    if hasattr(value, "as_py"):
        return value.as_py()
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return value.item()
    return value


def _json_object(value: Any, column: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    obj = json.loads(value)
    if not isinstance(obj, dict):
        raise ValueError(f"row column {column!r} is not a JSON object: {value!r:.200}")
    return obj


def build_payload(
    row: Mapping[str, Any], fingerprint: str, positions: tuple[str, ...] = POSITION_COLUMNS
) -> dict[str, Any]:
    """The Qdrant payload of an embedded segment row.

    ``positions`` are the position fields the row's modality places its segments with
    (``Modality.position_fields``). Keys whose value is null are left out (Qdrant's ``is_empty``
    matches them). User metadata is nested under ``metadata`` (see the module docstring).
    """
    payload: dict[str, Any] = {
        "asset_id": _plain(row["asset_id"]),
        "uri": _plain(row.get("uri")),
        "modality": _plain(row.get("modality")),
        "segment_index": int(_plain(row["segment_index"])),
        "segment_count": int(_plain(row["segment_count"])),
        "embedding_type": _plain(row.get("embedding_type")),
    }
    for name in positions:
        cast = _POSITIONS[name]
        value = _plain(row.get(name))
        if value is not None and value == value:  # NaN from pandas means unset
            payload[name] = cast(value)
    payload["content_version"] = _plain(row.get("content_version"))
    payload["fingerprint"] = fingerprint
    payload["label"] = _plain(row.get("label"))
    user = _json_object(_plain(row.get("payload")), "payload")
    user.update(_json_object(_plain(row.get("metadata")), "metadata"))
    if user:
        payload["metadata"] = user
    return {k: v for k, v in payload.items() if v is not None}
