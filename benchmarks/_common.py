"""Shared helpers for the benchmarks: config composition, local endpoints, RSS sampling, output.

Every benchmark measures ratios within ONE run on the machine it runs on (a baseline and the
pipeline side by side), so the figures compare like with like whatever the machine's speed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from nova_devkit.emulator.launch import use_dummy_credentials


def use_dummy_aws_env() -> None:
    """Dummy credentials for this process and the Ray workers it starts (they inherit env)."""
    use_dummy_credentials()
    # Ray Data's progress output would drown the benchmark's lines.
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def write_manifest(rows: list[dict[str, Any]], path: Path) -> Path:
    """A Parquet manifest (string columns) from dict rows."""
    cols = sorted({k for r in rows for k in r})
    table = pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in cols})
    pq.write_table(table, path)
    return path


@contextlib.contextmanager
def scratch_dir(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A temp directory removed at the end (unless ``keep``)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def start_ray(num_cpus: int | None = None) -> None:
    """A local Ray with the machine's CPUs (or ``num_cpus``), quiet; no-op when connected."""
    import ray

    if ray.is_initialized():
        return
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        ignore_reinit_error=True,
        configure_logging=True,
        logging_level=logging.ERROR,
    )
    import ray.data as rd

    ctx = rd.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


# -- output ------------------------------------------------------------------------------------


@dataclass
class Check:
    """One measured figure and its target."""

    name: str
    value: float
    op: str  # ">=" or "<="
    target: float
    unit: str = ""

    @property
    def passed(self) -> bool:
        return self.value >= self.target if self.op == ">=" else self.value <= self.target

    def line(self) -> str:
        verdict = "PASS" if self.passed else "MISS"
        return (
            f"{self.name} = {self.value:.3f}{self.unit} (target {self.op} {self.target}) {verdict}"
        )


@dataclass
class BenchResult:
    """What a benchmark reports: checks with targets, plain figures, and raw extras."""

    name: str
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, value: float, op: str, target: float, unit: str = "") -> Check:
        c = Check(name, float(value), op, target, unit)
        self.checks.append(c)
        print(c.line(), flush=True)
        return c

    def figure(self, name: str, value: Any, fmt: str = "") -> None:
        self.figures[name] = value
        shown = format(value, fmt) if fmt and isinstance(value, int | float) else value
        print(f"{name} = {shown}", flush=True)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "checks": [
                {"name": c.name, "value": c.value, "op": c.op, "target": c.target, "pass": c.passed}
                for c in self.checks
            ],
            "figures": self.figures,
        }


def dump_json(result: BenchResult, path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps(result.to_dict(), indent=2, default=str))


def machine_line() -> str:
    import platform

    import psutil

    mem = psutil.virtual_memory()
    load = os.getloadavg()
    return (
        f"machine: {os.cpu_count()} CPUs, {mem.total / 2**30:.1f} GiB RAM "
        f"({mem.available / 2**30:.1f} available), load {load[0]:.2f}/{load[1]:.2f}, "
        f"Python {platform.python_version()}"
    )


# -- memory sampling -----------------------------------------------------------------------------


def _category(proc: Any, root_pid: int) -> str:
    if proc.pid == root_pid:
        return "driver"
    try:
        text = " ".join(proc.cmdline()[:3]) or proc.name()
    except Exception:
        return "other"
    if "ray::" in text or "default_worker.py" in text:
        return "ray_workers"
    if any(k in text for k in ("raylet", "gcs_server", "ray/", "plasma", "dashboard")):
        return "ray_system"
    return "other"


class RssSampler:
    """Samples the summed RSS of a process and all its descendants every ``interval_s`` in a
    thread; ``peak`` is the largest sum seen, ``peak_by_category`` the largest per category
    (driver, ray_workers, ray_system, other).

    A local Ray started by the driver (``ray.init``) runs as its descendants: GCS and raylet are
    its children, workers the raylet's. Only descendants are counted, so other Ray clusters on
    the machine do not leak into the figure. Ray's object store is shared memory; pages a process
    has touched there count in its RSS, so the sum over-counts shared pages somewhat. The same
    bias applies to every run, which is what a ratio needs.
    """

    def __init__(self, root_pid: int | None = None, interval_s: float = 0.2) -> None:
        self.root_pid = root_pid if root_pid is not None else os.getpid()
        self.interval_s = interval_s
        self.peak = 0
        self.peak_procs = 0
        self.peak_by_category: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        import psutil

        try:
            root = psutil.Process(self.root_pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        by_cat: dict[str, int] = {}
        for proc in procs:
            try:
                rss = int(proc.memory_info().rss)
            except psutil.Error:
                continue
            total += rss
            cat = _category(proc, self.root_pid)
            by_cat[cat] = by_cat.get(cat, 0) + rss
        if total > self.peak:
            self.peak = total
            self.peak_procs = len(procs)
        for cat, rss in by_cat.items():
            self.peak_by_category[cat] = max(self.peak_by_category.get(cat, 0), rss)
        self.samples += 1
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def now() -> float:
    return time.monotonic()
