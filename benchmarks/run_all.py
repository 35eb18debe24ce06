"""Run every benchmark in turn and print a summary of the checks.

Usage: ``python -m benchmarks.run_all [--quick] [--only rate decode memory] [--json-dir DIR]``

Each benchmark measures its ratios within its own run (a baseline and the pipeline side by side);
they run one after another so that they do not compete for the machine's cores. A benchmark that
fails to run is reported as ERROR and the others still run. Exit status: 0 when every check
passed, 1 when any check missed or a benchmark errored.
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import bench_decode, bench_memory, bench_rate
from benchmarks._common import BenchResult, dump_json, machine_line

BENCHMARKS: dict[str, Callable[[bool], BenchResult]] = {
    "rate": lambda quick: bench_rate.run(quick=quick),
    "decode": lambda quick: bench_decode.run(quick=quick),
    "memory": lambda quick: bench_memory.run(quick=quick),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run of every benchmark")
    ap.add_argument("--only", nargs="*", choices=list(BENCHMARKS), help="run only these")
    ap.add_argument("--json-dir", help="write <name>.json per benchmark into this folder")
    args = ap.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    results: dict[str, BenchResult | None] = {}
    durations: dict[str, float] = {}
    for name in names:
        t0 = time.monotonic()
        try:
            results[name] = BENCHMARKS[name](args.quick)
        except Exception:
            traceback.print_exc()
            results[name] = None
        durations[name] = time.monotonic() - t0
        if args.json_dir and results[name] is not None:
            Path(args.json_dir).mkdir(parents=True, exist_ok=True)
            dump_json(results[name], str(Path(args.json_dir) / f"{name}.json"))  # type: ignore[arg-type]
        print(flush=True)

    print("== summary ==")
    print(machine_line())
    ok = True
    for name in names:
        res = results[name]
        if res is None:
            ok = False
            print(f"{name}: ERROR (see the traceback above) [{durations[name]:.0f}s]")
            continue
        print(f"{name}: {'PASS' if res.passed else 'MISS'} [{durations[name]:.0f}s]")
        for check in res.checks:
            print(f"  {check.line()}")
        ok = ok and res.passed
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
