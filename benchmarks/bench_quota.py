"""Two jobs at once on one Ray head, two collections, one endpoint quota Q.

Usage: ``python -m benchmarks.bench_quota [--quota 600] [--seconds 60] [--json out.json]``

A Ray head of its own (``ray start --head``) and two backfills joining it as separate drivers,
each writing its own collection and each configured with the account's quota Q (what a team
would write in both jobs' configuration). The local endpoint enforces Q requests/min (token
bucket, 2 s burst) and answers in 100-300 ms. The two jobs share one quota guard (one per
account, region and model), so together they should hold the quota: target accepted rate over
the window in which both jobs' pipelines are sending (from 5 s after the later one's first call
to 2 s before the earlier one's last call; the records tell the jobs apart by their texts)
>= 0.95 Q, and at most 1% of all requests throttled. Rates come from the endpoint's own request
records.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from benchmarks._common import BenchResult, dump_json, machine_line, scratch_dir, write_manifest
from benchmarks.bench_rate import TAIL_S, WARMUP_S, timeline

SUSTAIN_TARGET = 0.95
THROTTLE_TARGET = 0.01


def make_corpus(root: Path, rows: int, tag: str) -> Path:
    """Short texts that start with the job's tag, so the endpoint's records tell the jobs apart."""
    from nova_devkit.media import make_article

    texts = [f"{tag}: " + make_article(i, paragraphs=1, sentences=2) for i in range(rows)]
    rows_ = [
        {"asset_id": f"{tag}-{i:05d}", "modality": "text", "text": t} for i, t in enumerate(texts)
    ]
    return write_manifest(rows_, root / f"{tag}.parquet")


def both_running(records: list[Any]) -> tuple[float, float]:
    """The window (seconds from the first InvokeModel) in which both jobs' pipelines sent calls
    (their preflight calls, made before a job's pipeline starts, are not part of it)."""
    invokes = [r for r in records if r.operation == "InvokeModel"]
    t0 = min(r.timestamp for r in invokes)
    spans = []
    for tag in ("alpha", "beta"):
        ts = [r.timestamp - t0 for r in invokes if f"{tag}: " in str(r.body)]
        spans.append((min(ts), max(ts)) if ts else (0.0, 0.0))
    return max(s[0] for s in spans), min(s[1] for s in spans)


def run(quota: float = 600.0, seconds: float = 60.0) -> BenchResult:
    from nova_devkit.cluster import ray_head, start_job, wait_jobs
    from nova_devkit.emulator.config import EmulatorConfig, EmulatorQuotaConfig
    from nova_devkit.emulator.launch import local_endpoints, use_dummy_credentials

    use_dummy_credentials()
    rows = int(quota / 60.0 * seconds / 2)  # per job: together they take ~``seconds`` at Q
    res = BenchResult("quota")
    print("== bench_quota: two jobs, one head, one quota ==", flush=True)
    print(machine_line(), flush=True)
    res.figure("quota.quota_rpm", quota)
    res.figure("quota.rows_per_job", rows)
    emu_cfg = EmulatorConfig(
        latency_ms=100.0,
        jitter_ms=200.0,
        quota=EmulatorQuotaConfig(requests_per_minute=quota),
        max_recorded_requests=max(10_000, rows * 8),
    )
    with scratch_dir("bench-quota-") as root, local_endpoints(emu_cfg) as eps:
        with ray_head(num_cpus=2) as head:
            t = time.monotonic()
            procs = []
            for tag in ("alpha", "beta"):
                manifest = make_corpus(root, rows, tag)
                overrides = [
                    "usecase=text_retrieval",
                    f"manifest={manifest}",
                    *eps.pipeline_overrides(),
                    f"bedrock.quota.requests_per_minute={quota}",
                    f"qdrant.collection=bench_quota_{tag}",
                    f"qdrant.path={root / ('qdrant-' + tag)}",
                    f"run_dir={root / 'runs'}",
                    f"state.path={root / ('state-' + tag)}",
                ]
                procs.append(start_job(head, overrides, root / f"{tag}.log"))
            codes = wait_jobs(procs, timeout_s=max(600.0, seconds * 6))
            res.figure("quota.wall_s", round(time.monotonic() - t, 1))
        res.figure("quota.exit_codes", codes)
        for tag in ("alpha", "beta"):
            log = (root / f"{tag}.log").read_text()
            found = re.findall(r"report:\s+(\S+)", log)
            if not found:
                print(log[-3000:], flush=True)
                continue
            report = json.loads(Path(found[-1]).read_text())
            keys = ("embedded", "dead_lettered", "bedrock_calls", "throttled", "duration_s")
            res.figure(f"quota.{tag}.report", {k: report.get(k) for k in keys})
            res.figure(f"quota.{tag}.guard", (report.get("rate_budget") or {}).get("guard"))
        tl = timeline(eps.emulator.requests)
        res.figure(
            "quota.endpoint",
            f"{tl.total} requests: {len(tl.accepted)} accepted, {len(tl.throttled)} throttled, "
            f"{tl.other_errors} other errors, last accepted at {tl.end:.1f}s",
        )
        res.figure("quota.accepted_rpm_per_5s", " ".join(map(str, tl.series())))
        start, stop = both_running(eps.emulator.requests)
        res.figure("quota.both_running_s", f"{start:.1f}-{stop:.1f}")
        whole = tl.accepted_per_min(WARMUP_S, tl.end - TAIL_S) / quota
        res.figure("quota.whole_run_ratio (start-up and tails included)", round(whole, 3))
        sustained = tl.accepted_per_min(start + WARMUP_S, stop - TAIL_S) / quota
        res.check("quota.together_sustained_ratio", sustained, ">=", SUSTAIN_TARGET)
        res.check(
            "quota.throttled_fraction", len(tl.throttled) / max(1, tl.total), "<=", THROTTLE_TARGET
        )
    print(f"quota: {'PASS' if res.passed else 'MISS'}", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quota", type=float, default=600.0, help="the endpoint's requests/min")
    ap.add_argument("--seconds", type=float, default=60.0, help="target length of the pair")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args(argv)
    dump_json(run(args.quota, args.seconds), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
