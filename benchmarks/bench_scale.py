"""Corpora of millions of rows in bounded memory: estimate 1,000,000 inline texts, plan 10,000,000.

Usage: ``python -m benchmarks.bench_scale [--estimate-rows N] [--plan-rows N] [--keep]``

1. Generates two Parquet manifests of inline texts (80 to 400 characters, every one distinct),
   written in batches (the generator holds one batch).
2. **Estimate**: ``python -m jobs.estimate usecase=text_retrieval manifest=<1M rows>`` in a fresh
   process with its own local Ray: the manifest is planned, every text decoded and chunked, every
   request built and checked, nothing sent (``docs/estimates.md``).
3. **Plan**: ``python -m jobs.estimate ... plan_only=true`` over the 10M-row manifest, twice: on an
   empty journal (every row to embed) and against a journal that holds every row (the nightly
   case: every row read, validated and diffed, none to embed).

While each command runs, a thread samples every process of its tree (the job, and the GCS,
raylet and workers of its Ray) every 0.25 s; the table gives each process's peak RSS, the largest
first. Targets (issue: throughput and scale): the 1M estimate under 120 s, and no process over
2 GiB in any of the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks._common import machine_line, scratch_dir

GiB = 2**30
MiB = 2**20
ESTIMATE_TARGET_S = 120.0
MEMORY_TARGET = 2 * GiB
WORDS = [
    "river",
    "stone",
    "market",
    "ledger",
    "signal",
    "harbour",
    "lantern",
    "orbit",
    "velvet",
    "cipher",
    "meadow",
    "quartz",
    "engine",
    "archive",
    "canyon",
    "pixel",
    "summit",
    "thunder",
    "garden",
    "falcon",
    "ember",
    "prism",
    "walnut",
    "beacon",
]


def write_texts(path: Path, rows: int, batch: int = 200_000, seed: int = 7) -> Path:
    """``rows`` distinct inline texts (80-400 characters) as a manifest, written in batches."""
    rng = random.Random(seed)
    schema = pa.schema([("asset_id", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, batch):
            n = min(batch, rows - start)
            ids = [f"doc-{i:09d}" for i in range(start, start + n)]
            texts = []
            for i in range(start, start + n):
                words = rng.choices(WORDS, k=rng.randint(12, 60))
                texts.append(f"{i} " + " ".join(words))
            writer.write_table(pa.table({"asset_id": ids, "text": texts}, schema=schema))
    return path


class PeakPerProcess:
    """Peak RSS of every process of a tree (by pid), sampled in a thread."""

    def __init__(self, root_pid: int, interval_s: float = 0.25) -> None:
        self.root_pid, self.interval_s = root_pid, interval_s
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                root = psutil.Process(self.root_pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                procs = []
            for proc in procs:
                try:
                    rss = int(proc.memory_info().rss)
                    name = _name(proc)
                except psutil.Error:
                    continue
                old = self.peaks.get(proc.pid)
                if old is None or rss > old[1]:
                    self.peaks[proc.pid] = (name, rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakPerProcess:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def table(self, top: int = 8) -> list[tuple[str, int]]:
        return sorted(self.peaks.values(), key=lambda p: -p[1])[:top]


def _name(proc: Any) -> str:
    cmd = proc.cmdline()
    joined = " ".join(cmd)
    if "jobs.estimate" in joined or "jobs.backfill" in joined:
        return "job driver"
    for marker in ("gcs_server", "raylet", "dashboard", "log_monitor", "runtime_env"):
        if marker in joined:
            return f"ray {marker}"
    title = proc.name()
    if title.startswith("ray::"):
        return title
    if "default_worker" in joined:
        return "ray worker"
    if "decode_isolated" in joined or "nova-decoder" in joined:
        return "decoder process"
    return title


def run_job(args: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.estimate", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with PeakPerProcess(proc.pid) as peaks:
        out, _ = proc.communicate(timeout=3600)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"job failed ({proc.returncode}):\n{out[-4000:]}")
    found = sorted(cwd.glob("runs/**/estimate.json"), key=os.path.getmtime)
    estimate = json.loads(found[-1].read_text())
    return {"wall_s": wall, "peaks": peaks.table(), "estimate": estimate, "output": out}


def fill_journal(state: Path, manifest: Path, collection: str) -> None:
    """A journal holding every row of ``manifest`` as embedded with this run's parameters (what
    a finished backfill leaves), written directly: the nightly case without embedding 10M rows."""
    from pipelines.config.compose import compose_backfill
    from pipelines.core.ids import fingerprint
    from pipelines.core.incremental import content_versions
    from pipelines.core.journal import Journal

    cfg = compose_backfill(["usecase=text_retrieval", f"manifest={manifest}"])
    fp = fingerprint(cfg.embedding, cfg.segmentation, "text")
    journal = Journal(state)
    journal.record_fingerprints(collection, {"text": fp})
    journal.close()
    db = sqlite3.connect(state / "journal.sqlite")
    with pq.ParquetFile(manifest) as file:
        for batch in file.iter_batches(batch_size=200_000):
            table = pa.Table.from_batches([batch])
            n = table.num_rows
            table = table.append_column("uri", pa.nulls(n, pa.string()))
            table = table.append_column("content_version", pa.nulls(n, pa.string()))
            versions = content_versions(table).column("content_version").to_pylist()
            ids = table.column("asset_id").to_pylist()
            db.executemany(
                "INSERT OR REPLACE INTO assets VALUES (?, ?, ?, 'text', ?, 'embedded', NULL, 0, "
                "1, 'bench', 0)",
                [(collection, a, v, fp) for a, v in zip(ids, versions, strict=True)],
            )
            db.commit()
    db.close()


def _peaks_line(peaks: list[tuple[str, int]]) -> str:
    return ", ".join(f"{name} {rss / MiB:.0f} MiB" for name, rss in peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--estimate-rows", type=int, default=1_000_000)
    parser.add_argument("--plan-rows", type=int, default=10_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    opts = parser.parse_args()

    print(machine_line())
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo), "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    verdicts: list[bool] = []
    with scratch_dir("bench-scale-", keep=opts.keep) as root:
        common = ["usecase=text_retrieval", "ray.num_cpus=2", f"run_dir={root / 'runs'}"]

        if opts.estimate_rows:
            t0 = time.perf_counter()
            small = write_texts(root / "estimate.parquet", opts.estimate_rows)
            print(f"generated {opts.estimate_rows:,} texts in {time.perf_counter() - t0:.1f}s")
            res = run_job(
                [*common, f"manifest={small}", f"state.path={root / 'state-e'}"], root, env
            )
            est = res["estimate"]
            ok_time = res["wall_s"] <= ESTIMATE_TARGET_S
            ok_mem = all(rss <= MEMORY_TARGET for _, rss in res["peaks"])
            verdicts += [ok_time, ok_mem]
            print(
                f"estimate {opts.estimate_rows:,} rows: {res['wall_s']:.1f}s wall "
                f"(target <= {ESTIMATE_TARGET_S:.0f}s: {'PASS' if ok_time else 'MISS'}); "
                f"{est['segments']:,} segments, {est['bedrock_calls']:,} calls, "
                f"${est['cost_usd']:.2f}"
            )
            print(
                f"  peak RSS by process: {_peaks_line(res['peaks'])} "
                f"({'PASS' if ok_mem else 'MISS'}: none over 2 GiB)"
            )

        if opts.plan_rows:
            t0 = time.perf_counter()
            big = write_texts(root / "plan.parquet", opts.plan_rows)
            size = big.stat().st_size / MiB
            print(
                f"generated {opts.plan_rows:,} texts ({size:.0f} MiB) in "
                f"{time.perf_counter() - t0:.1f}s"
            )
            state = root / "state-p"
            for label in ("empty journal", "journal holding every row"):
                if label != "empty journal":
                    t0 = time.perf_counter()
                    fill_journal(state, big, _collection_key(root, big))
                    print(
                        f"  (journal of {opts.plan_rows:,} rows written in "
                        f"{time.perf_counter() - t0:.1f}s)"
                    )
                res = run_job(
                    [*common, f"manifest={big}", f"state.path={state}", "plan_only=true"],
                    root,
                    env,
                )
                est = res["estimate"]
                ok_mem = all(rss <= MEMORY_TARGET for _, rss in res["peaks"])
                verdicts.append(ok_mem)
                print(
                    f"plan {opts.plan_rows:,} rows ({label}): {res['wall_s']:.1f}s wall, "
                    f"{est['to_embed']:,} to embed, {est['skipped_unchanged']:,} unchanged"
                )
                print(
                    f"  peak RSS by process: {_peaks_line(res['peaks'])} "
                    f"({'PASS' if ok_mem else 'MISS'}: none over 2 GiB)"
                )
    print("RESULT:", "PASS" if all(verdicts) else "MISS")


def _collection_key(root: Path, manifest: Path) -> str:
    """The journal key the job will use (its collection_key, from the job's folder)."""
    from pipelines.backfill import collection_key
    from pipelines.config.compose import compose_backfill

    cwd = os.getcwd()
    os.chdir(root)
    try:
        cfg = compose_backfill(["usecase=text_retrieval", f"manifest={manifest}"])
        return collection_key(cfg)
    finally:
        os.chdir(cwd)


if __name__ == "__main__":
    main()
