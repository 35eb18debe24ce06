"""Write throughput of the Qdrant store: points/s at 1024 and 3072 dimensions by batch size.

Usage: ``python -m benchmarks.bench_writes [--points 4000] [--dims 1024 3072]
[--batch-sizes 64 128 256 512] [--settings default large] [--json out.json]``

Embedded mode only: a Qdrant server binary cannot be obtained on the machine these benchmarks run
on, so server writes (and parallel writers, which only a server allows: the embedded store
admits one client process) are not measured here; see ``docs/qdrant-sizing.md`` for how the
server-mode writers are sized. Each figure writes ``--points`` random unit vectors with the
pipeline's payload through :class:`~pipelines.stores.qdrant.QdrantStore` (the same call the
driver makes in embedded mode) into a fresh on-disk store, and also reports the CPU-seconds per
1,000 points (the driver's share of a run's CPU in embedded mode). ``--settings large`` creates
the collection with the large-corpus layout (vectors on disk, scalar quantization), which the
embedded store records but does not use.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from benchmarks._common import BenchResult, dump_json, machine_line
from benchmarks.bench_qdrant_local import make_rows
from pipelines.config.schema import (
    CollectionSettingsConfig,
    EmbeddingConfig,
    QdrantConfig,
    SegmentationConfig,
)
from pipelines.stores.qdrant import QdrantStore

SETTINGS = {
    "default": CollectionSettingsConfig(),
    "large": CollectionSettingsConfig(vectors_on_disk=True, quantization="scalar"),
}


def write_rate(
    rows: list[dict[str, object]], dim: int, batch_size: int, settings: CollectionSettingsConfig
) -> tuple[float, float]:
    """(points/s, CPU-seconds per 1,000 points) of one write of ``rows`` into a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = QdrantConfig(
            path=tmp, collection="bench", batch_size=batch_size, collection_settings=settings
        )
        emb, seg = EmbeddingConfig(dimension=dim), SegmentationConfig()
        with QdrantStore(cfg, dim, embedding=emb, segmentation=seg) as store:
            store.ensure_collection()
            t, cpu = time.perf_counter(), time.process_time()
            # The driver writes what one embed batch acknowledges at a time.
            for start in range(0, len(rows), batch_size):
                store.write(rows[start : start + batch_size])
            wall, cpu = time.perf_counter() - t, time.process_time() - cpu
            assert store.finish() == len(rows)
    return len(rows) / wall, cpu / len(rows) * 1000


def run(points: int, dims: list[int], batch_sizes: list[int], settings: list[str]) -> BenchResult:
    res = BenchResult("writes")
    print("== bench_writes (embedded Qdrant) ==", flush=True)
    print(machine_line(), flush=True)
    for dim in dims:
        rows = make_rows(points, dim)
        for name in settings:
            for bs in batch_sizes:
                rate, cpu_k = write_rate(rows, dim, bs, SETTINGS[name])
                res.figures[f"writes.{dim}.{name}.batch{bs}"] = {
                    "points_per_s": round(rate),
                    "cpu_s_per_1000": round(cpu_k, 3),
                }
                print(
                    f"writes.{dim}.{name}.batch{bs} = {rate:8.0f} points/s, {cpu_k:.3f} CPU-s per "
                    f"1,000 points; load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    print("writes.server = not measured (no Qdrant server binary on this machine)", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--points", type=int, default=4000)
    ap.add_argument("--dims", nargs="*", type=int, default=[1024, 3072])
    ap.add_argument("--batch-sizes", nargs="*", type=int, default=[64, 128, 256, 512])
    ap.add_argument("--settings", nargs="*", choices=list(SETTINGS), default=["default", "large"])
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args(argv)
    dump_json(run(args.points, args.dims, args.batch_sizes, args.settings), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
