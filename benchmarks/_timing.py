"""Instrumented decode stage: the real :class:`DecodeStage`, plus a log of when each task ran.

Each call appends ``{"pid", "start", "end", "cpu_s", "rows"}`` (wall-clock seconds, and the
process's CPU seconds during the call) to a JSON-lines file per
process in ``log_dir``; :func:`task_spans` reads them back so a benchmark can say how many decode
tasks really ran at once (the divisor of a per-core figure) and how busy they were.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.core.runner import Pipeline
from pipelines.core.stage import Stage
from pipelines.stages.decode import DecodeStage


class TimedDecodeStage(DecodeStage):
    """:class:`DecodeStage` that records each call's wall-clock span (same output)."""

    def __init__(self, stage: DecodeStage, log_dir: str) -> None:
        super().__init__(
            stage.seg,
            stage.emb,
            stage.s3_endpoint_url,
            resources=stage.resources,
            max_rows_per_output=stage.max_rows_per_output,
            max_bytes_per_output=stage.max_bytes_per_output,
        )
        self.log_dir = log_dir

    def process(self, batch: pa.Table) -> Iterator[pa.Table]:
        start = time.time()
        cpu0 = time.process_time()
        rows = 0
        try:
            for table in super().process(batch):
                rows += table.num_rows
                yield table
        finally:
            line = {
                "pid": os.getpid(),
                "start": start,
                "end": time.time(),
                "cpu_s": time.process_time() - cpu0,
                "rows": rows,
            }
            with open(Path(self.log_dir) / f"decode-{os.getpid()}.jsonl", "a") as fh:
                fh.write(json.dumps(line) + "\n")


def timed(pipeline: Pipeline, log_dir: str) -> Pipeline:
    """``pipeline`` with its decode stage instrumented."""
    stages: list[Stage] = [
        TimedDecodeStage(s, log_dir) if isinstance(s, DecodeStage) else s for s in pipeline.stages
    ]
    return Pipeline(pipeline.name, pipeline.source, stages)


@dataclass
class Spans:
    """Decode task activity: how many ran at once and how busy they kept the CPUs."""

    tasks: int
    processes: int
    first_start: float
    last_end: float
    busy_s: float
    peak_concurrency: int
    cpu_s: float = 0.0

    @property
    def active_s(self) -> float:
        return max(1e-9, self.last_end - self.first_start)

    @property
    def mean_concurrency(self) -> float:
        return self.busy_s / self.active_s


def task_spans(log_dir: str | os.PathLike[str]) -> Spans:
    spans: list[dict[str, Any]] = []
    for path in Path(log_dir).glob("decode-*.jsonl"):
        spans.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    if not spans:
        return Spans(0, 0, 0.0, 0.0, 0.0, 0)
    events = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return Spans(
        tasks=len(spans),
        processes=len({s["pid"] for s in spans}),
        first_start=min(s["start"] for s in spans),
        last_end=max(s["end"] for s in spans),
        busy_s=sum(s["end"] - s["start"] for s in spans),
        peak_concurrency=peak,
        cpu_s=sum(s.get("cpu_s", 0.0) for s in spans),
    )


def clear_spans(log_dir: str | os.PathLike[str]) -> None:
    for path in Path(log_dir).glob("decode-*.jsonl"):
        path.unlink()
