"""Peak memory is bounded by the segment, not the asset.

Usage: ``python -m benchmarks.bench_memory [--quick] [--json out.json]``

Two whole backfills (``run_backfill``, use case ``mixed_media``, local endpoint with no quota and
5 ms latency, embedded Qdrant in a temp dir), each in its own fresh process with its own local Ray:

- **small**: a 1-minute video and a 10-page PDF;
- **large**: a 1-hour video and a 1,000-page PDF (``--quick``: 10 minutes and 100 pages).

The video is 160x120, 5 fps, one keyframe every 60 s (so the pipeline takes its re-encode path,
decoding and encoding every frame), with 8 kHz AAC audio: a one-minute clip generated once and
repeated by stream copy. The PDF pages are simple text pages (A4, rendered at 150 dpi).

While a run goes, a thread samples the RSS of the run's process and every descendant (the driver
with the endpoint and Qdrant in it, GCS, raylet, Ray workers) every 0.2 s; the figure is the peak
of the sum. Target: peak(large) <= 1.5 x peak(small).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    BenchResult,
    RssSampler,
    dump_json,
    machine_line,
    scratch_dir,
    use_dummy_aws_env,
    write_manifest,
)
from benchmarks._media import repeat_media
from pipelines.config.compose import compose_backfill

TARGET = 1.5
MiB = 2**20
CHILD_TIMEOUT_S = 600


def make_media(root: Path, quick: bool) -> dict[str, dict[str, Path]]:
    from nova_devkit.media.av import make_video
    from nova_devkit.media.docs import make_pdf

    clip = make_video(
        root / "clip.mp4", 60, fps=5, size=(160, 120), gop=300, audio_rate=8000, crf=35
    )
    long_minutes = 10 if quick else 60
    long_video = repeat_media(clip, root / f"video_{long_minutes}min.mp4", long_minutes)
    pages = 100 if quick else 1000

    def simple_pdf(name: str, n: int) -> Path:
        return make_pdf(root / name, n, table_every=0, chart_every=0)

    return {
        "small": {"video": Path(clip), "document": simple_pdf("doc10.pdf", 10)},
        "large": {"video": long_video, "document": simple_pdf(f"doc{pages}.pdf", pages)},
    }


def child(case: str, root: Path) -> None:
    """Run one backfill (in a fresh process) and print its report as one JSON line."""
    from nova_devkit.emulator.config import EmulatorConfig, EmulatorLatencyConfig
    from nova_devkit.emulator.launch import local_endpoints
    from pipelines.backfill import run_backfill

    use_dummy_aws_env()
    manifest = root / f"{case}.parquet"
    emu = EmulatorConfig(latency_ms=5.0, latency=EmulatorLatencyConfig(), max_recorded_requests=50)
    with local_endpoints(emu) as eps:
        cfg = compose_backfill(
            [
                "usecase=mixed_media",
                f"manifest={manifest}",
                *eps.pipeline_overrides(),
                "bedrock.quota.requests_per_minute=1000000",
                "bedrock.quota.tokens_per_minute=1000000000",
                f"qdrant.path={root / ('qdrant-' + case)}",
                f"qdrant.collection=bench_memory_{case}",
                f"run_dir={root / 'runs'}",
            ]
        )
        result = run_backfill(cfg)
        stats = eps.emulator.stats()
    keys = ("rows", "embedded", "dead_lettered", "points_written", "bedrock_calls", "duration_s")
    out = {k: result.report.get(k) for k in keys}
    out["endpoint_requests"] = stats.get("requests")
    print("BENCH_MEMORY_RESULT " + json.dumps(out), flush=True)


def run_case(case: str, root: Path) -> tuple[RssSampler, dict[str, Any], float]:
    cmd = [sys.executable, "-m", "benchmarks.bench_memory", "--child", case, "--root", str(root)]
    t0 = time.monotonic()
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env=env,
    )
    with RssSampler(root_pid=proc.pid, interval_s=0.2) as sampler:
        try:
            output, _ = proc.communicate(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    wall = time.monotonic() - t0
    report: dict[str, Any] = {}
    for line in output.splitlines():
        if line.startswith("BENCH_MEMORY_RESULT "):
            report = json.loads(line.split(" ", 1)[1])
    if proc.returncode != 0 or not report:
        tail = "\n".join(output.splitlines()[-30:])
        raise RuntimeError(f"the {case} run failed (exit {proc.returncode}):\n{tail}")
    return sampler, report, wall


def run(quick: bool = False) -> BenchResult:
    res = BenchResult("memory")
    print(f"== bench_memory ({'quick' if quick else 'full'}) ==", flush=True)
    print(machine_line(), flush=True)
    with scratch_dir("bench-memory-") as root:
        t = time.monotonic()
        media = make_media(root, quick)
        res.figure("memory.media_generation_s", round(time.monotonic() - t, 1))
        peaks: dict[str, int] = {}
        for case in ("small", "large"):
            files = media[case]
            write_manifest(
                [
                    {"asset_id": f"{case}-{modality}", "uri": str(path), "modality": modality}
                    for modality, path in files.items()
                ],
                root / f"{case}.parquet",
            )
            sizes = ", ".join(f"{m} {p.stat().st_size / MiB:.1f} MiB" for m, p in files.items())
            res.figure(f"memory.{case}.inputs", sizes)
            sampler, report, wall = run_case(case, root)
            peaks[case] = sampler.peak
            res.figure(f"memory.{case}.report", report)
            res.figure(
                f"memory.{case}.peak_rss_mib",
                f"{sampler.peak / MiB:.0f} ({sampler.peak_procs} processes at the peak, "
                f"{sampler.samples} samples, wall {wall:.1f}s)",
            )
            res.figures[f"memory.{case}.peak_rss_bytes"] = sampler.peak
            res.figure(
                f"memory.{case}.peak_by_category_mib",
                {k: round(v / MiB) for k, v in sorted(sampler.peak_by_category.items())},
            )
        res.check("memory.peak_ratio", peaks["large"] / max(1, peaks["small"]), "<=", TARGET)
    print(f"memory: {'PASS' if res.passed else 'MISS'}", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10-minute video and 100-page PDF")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--child", choices=("small", "large"), help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, Path(args.root))
        return 0
    res = run(args.quick)
    dump_json(res, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
