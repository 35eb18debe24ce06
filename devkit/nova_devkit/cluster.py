"""A Ray head of its own on this machine, and backfills run as separate drivers joining it.

What the shared quota guard is tested and measured with (``tests/faults/test_quota.py``,
``benchmarks/bench_quota.py``): ``ray start --head`` with free ports and a short temporary
folder, then each job as its own ``python -c`` driver process with ``ray.address=<head>``, as
``ray job submit`` would run it (without the dashboard's job server, which 2 cores can spare less).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

JOB = """
import sys
from pipelines.backfill import run_backfill
from pipelines.config.compose import compose_backfill
sys.exit(run_backfill(compose_backfill(sys.argv[1:])).exit_code)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Head:
    """A running head: its GCS address and the environment its drivers need."""

    address: str
    env: dict[str, str]


@contextlib.contextmanager
def ray_head(num_cpus: int = 2, env: dict[str, str] | None = None) -> Iterator[Head]:
    """``ray start --head`` on free ports; after, the processes of this head only are stopped."""
    tmp = tempfile.mkdtemp(prefix="rayq-", dir="/tmp")  # short: Ray's socket paths live under it
    ray_bin = str(Path(sys.executable).with_name("ray"))
    environ = {**os.environ, **(env or {}), "RAY_TMPDIR": tmp, "RAY_USAGE_STATS_ENABLED": "0"}
    environ.pop("RAY_ADDRESS", None)
    if "RAY_AUTH_MODE" not in environ:
        # Ray >= 2.60: `ray start` turns token authentication on by itself when a token file
        # exists (~/.ray/auth_token), but a driver given the head's address never does, and is
        # refused. The head and its jobs get this head's own token instead, whatever the machine
        # holds.
        environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    port = free_port()
    cmd = [
        ray_bin, "start", "--head", f"--port={port}", f"--num-cpus={num_cpus}",
        "--include-dashboard=false", f"--temp-dir={tmp}",
        f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
        f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
    ]  # fmt: skip
    subprocess.run(cmd, env=environ, check=True, capture_output=True, timeout=180)
    try:
        yield Head(f"127.0.0.1:{port}", environ)
    finally:
        _stop(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _stop(tmp: str) -> None:
    """Kill the processes of this head (those started with its temp folder), and only those."""
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if tmp in cmdline and proc.pid != os.getpid():
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)


def start_job(head: Head, overrides: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """One backfill as a driver of its own joining ``head``; its output goes to ``log``."""
    out = open(log, "wb")  # noqa: SIM115 - closed by the caller's wait_jobs
    return subprocess.Popen(
        [sys.executable, "-c", JOB, f"ray.address={head.address}", *overrides],
        env=head.env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def wait_jobs(procs: Sequence[subprocess.Popen[bytes]], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes
