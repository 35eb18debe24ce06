"""A collection's vectors as blocks in Ray's object store, and the run folder of an analysis.

The store is scanned in the driver (an embedded store can only be read by the process that
holds its folder), ``scan_batch`` points at a time; each batch becomes a :class:`VectorBlock`
put into Ray's object store at once, so the driver never holds more than one batch of vectors.
Tasks then take blocks by reference.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.config.schema import AnalyticsJobConfig, EmbeddingConfig
from pipelines.core.errors import ConfigError

# Payload fields a block carries beside the vectors (what the reports name).
BLOCK_FIELDS = ("asset_id", "modality", "label", "uri", "segment_index")


@dataclass
class VectorBlock:
    """Unit vectors of a batch of points (``vectors``: float32, one row per point) and the
    payload fields the analyses report, as lists aligned with the rows."""

    point_ids: list[str]
    vectors: np.ndarray
    fields: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.point_ids)


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero): dot products are cosines."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.where(norms == 0, 1.0, norms), dtype=np.float32)


def block_of(table: pa.Table, label_field: str = "label") -> VectorBlock:
    """A :class:`VectorBlock` from ``STORED_POINT`` rows (points without a vector are left out)."""
    keep = table.filter(pa.compute.is_valid(table.column("vector")))
    ids = [str(x) for x in keep.column("point_id").to_pylist()]
    vectors = keep.column("vector").to_pylist()
    matrix = np.asarray(vectors, dtype=np.float32) if vectors else np.zeros((0, 0), np.float32)
    fields: dict[str, list[Any]] = {name: [] for name in (*BLOCK_FIELDS, "label")}
    for raw in keep.column("payload_json").to_pylist():
        payload = json.loads(raw) if raw else {}
        for name in BLOCK_FIELDS:
            fields[name].append(payload.get(name))
        fields["label"][-1] = _dotted(payload, label_field)
    return VectorBlock(ids, unit_rows(matrix) if len(ids) else matrix, fields)


def _dotted(payload: Mapping[str, Any], name: str) -> Any:
    """``metadata.sku`` reads ``payload["metadata"]["sku"]``."""
    value: Any = payload
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


@dataclass
class Collection:
    """An opened collection: the store (addressing it by the name the job was given), the
    physical name behind an alias, and the embedding parameters it records."""

    store: Any
    name: str
    physical: str
    embedding: EmbeddingConfig


def open_collection(cfg: AnalyticsJobConfig) -> Collection:
    """The store on ``qdrant.collection`` (alias or name); ConfigError when it does not exist.
    The caller closes ``.store``."""
    from pipelines.collections import Recorded
    from pipelines.config.validate import validate_qdrant
    from pipelines.stores import open_store

    validate_qdrant(cfg.qdrant)
    store = open_store(cfg.qdrant, cfg.embedding, cfg.segmentation)
    store.open()
    try:
        name = cfg.qdrant.collection
        physical = store.resolve_alias(name) or name
        if physical not in store.collection_names():
            raise ConfigError("qdrant.collection", f"no collection or alias named {name!r}")
        held = Recorded.of(store.for_collection(physical).metadata())
        emb = cfg.embedding
        if held is not None:
            emb = dataclasses.replace(held.embedding, query_purpose=cfg.embedding.query_purpose)
        return Collection(store.for_collection(name, emb.dimension), name, physical, emb)
    except BaseException:
        store.close()
        raise


def put_blocks(store: Any, batch_size: int, label_field: str = "label") -> Iterator[Any]:
    """Scan the collection and put each batch into Ray's object store: yields the references
    (the driver holds one batch at a time)."""
    import ray

    for table in store.scan(batch_size=batch_size, with_vectors=True):
        block = block_of(table, label_field)
        if len(block):
            yield ray.put(block)


def validate_analytics(cfg: AnalyticsJobConfig) -> None:
    """The keys every analytics job shares; raises ConfigError naming one."""
    from pipelines.config.validate import validate_qdrant

    validate_qdrant(cfg.qdrant)
    if not 1 <= cfg.scan_batch <= 100_000:
        raise ConfigError("scan_batch", f"must be in 1..100000, got {cfg.scan_batch}")


def run_folder(cfg: AnalyticsJobConfig, job: str) -> tuple[Path, str]:
    """``out_dir``, or ``runs/<usecase>/<job>-<run id>``: created; returns it and the run id."""
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    out = Path(cfg.out_dir or Path(cfg.run_dir) / cfg.usecase.name / f"{job}-{run_id}")
    out.mkdir(parents=True, exist_ok=True)
    return out, run_id


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return path


def start_ray(cfg: AnalyticsJobConfig, worker_env: Mapping[str, str] | None = None) -> None:
    """Join or start Ray as the backfill does (no-op when this process is already connected)."""
    from pipelines.core.runner import init_ray

    init_ray(cfg.ray, worker_env)
