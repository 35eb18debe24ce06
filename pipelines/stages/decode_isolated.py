"""Decoding each asset in a worker process, so that one bad file fails only itself.

Native decoder code (MuPDF, FFmpeg, a plugin's library) can crash the process, allocate without
bound or hang. Run in the decode task's own process, any of these takes the whole block down (up
to hundreds of assets), Ray retries it, the run fails, and the next run fails the same way. Here
each decode task process keeps one long-lived *decoder process* (started on first use, reused by
every later task of that Ray worker, restarted only after a failure) and sends it one asset at a
time over a pipe; the decoder process runs :func:`pipelines.stages.decode.decode_asset` and
streams the segment rows back. The task watches it:

- the decoder process dies (``os.abort()``, a segfault, any signal it did not get from us):
  the asset is dead-lettered ``decoder_crashed``;
- its memory grows more than ``decode.memory_limit_mb`` above where it started (resident size,
  polled while waiting; and its data segment as a hard ``RLIMIT_DATA`` limit, where the decoder
  sees ``MemoryError``), or the kernel kills it with SIGKILL: ``decode_out_of_memory``;
- the time the task spends *waiting* for it on one asset passes ``decode.timeout_s`` (time the
  task spends handing rows downstream does not count): ``decode_timeout``.

In every case the decoder process is killed and the next asset gets a fresh one; the other
assets of the block are decoded as usual. Rows already streamed for the failed asset are followed
by its dead-letter row, so the asset is all-or-nothing as for any other decode failure.

Why a process of our own (``subprocess`` running this module) rather than ``multiprocessing``:
a Ray worker's ``__main__`` is Ray's, which ``spawn`` would re-import, and ``fork`` of a process
with Ray's threads is unsafe. Why one long-lived process per task process: the start-up (Python,
pyarrow, the registry) is paid once per Ray worker, not per asset; an asset costs two pipe round
trips and a pickle of its rows (measured with ``benchmarks/bench_decode.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

from pipelines.core import codes
from pipelines.core.errors import InfrastructureError, RecordError
from pipelines.core.rows import dead_letter_row

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">Q")
# How often the task looks at the decoder process's memory and clock while it waits (seconds).
POLL_S = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# -- framing ----------------------------------------------------------------------------------


def _write_frame(out: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(data)))
    out.write(data)
    out.flush()


def _read_exact(fd: int, n: int) -> bytes | None:
    """``n`` bytes from ``fd``; None at end of file (the other side is gone)."""
    chunks: list[bytes] = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> Any:
    """The next message from ``fd``; raises EOFError when the other side is gone."""
    head = _read_exact(fd, _HEADER.size)
    if head is None:
        raise EOFError
    (size,) = _HEADER.unpack(head)
    body = _read_exact(fd, size)
    if body is None:
        raise EOFError
    return pickle.loads(body)


# -- the task's side --------------------------------------------------------------------------


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class DecoderProcess:
    """One decoder process, as the decode task sees it: start, decode assets, stop.

    ``setup`` is the pickled decode context (what :func:`decode_asset` needs besides the asset:
    segmentation, embedding, S3 endpoint, the modality registry, the use case's modalities),
    pickled with Ray's cloudpickle so that modalities registered at run time travel by value.
    """

    def __init__(self, setup: bytes, timeout_s: float, memory_limit_mb: int) -> None:
        self.setup = setup
        self.timeout_s = timeout_s
        self.memory_limit = memory_limit_mb * 1024 * 1024
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_rss = 0
        self.started = 0  # processes started (the first, and one after each failure)

    # -- life cycle ---------------------------------------------------------------------------

    def _start(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        # The task's import path (a Ray job's working_dir, a plugin's folder) for the modalities.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.stages.decode_isolated", str(self.memory_limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            bufsize=0,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            _write_frame(proc.stdin, ("setup", self.setup))
            ready = _read_frame(proc.stdout.fileno())
        except (EOFError, OSError) as exc:
            self._kill(proc)
            raise RuntimeError(f"the decoder process did not start: {exc}") from exc
        if ready != ("ready", None):
            self._kill(proc)
            raise RuntimeError(f"the decoder process did not start: {ready!r}")
        self.base_rss = _rss_bytes(proc.pid)
        self.started += 1
        return proc

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close()

    def close(self) -> None:
        """Stop the decoder process (it also stops by itself when the task's process dies)."""
        if self.proc is not None:
            self._kill(self.proc)
            self.proc = None

    # -- one asset ----------------------------------------------------------------------------

    def decode(self, asset: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The asset's segment and dead-letter rows, as :func:`decode_asset` gives them; a
        ``decoder_crashed`` / ``decode_out_of_memory`` / ``decode_timeout`` dead-letter row when
        the decoder process fails on it. Raises :class:`InfrastructureError` when the decoder
        found the storage down (the run stops)."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        produced = 0
        waited = 0.0
        failure: tuple[str, str] | None = None
        try:
            _write_frame(proc.stdin, ("decode", asset))
        except OSError:
            failure = self._died(proc)
        while failure is None:
            began = time.monotonic()
            readable, _, _ = select.select([fd], [], [], POLL_S)
            waited += time.monotonic() - began
            if not readable:
                rss = _rss_bytes(proc.pid)
                if self.memory_limit and rss - self.base_rss > self.memory_limit:
                    failure = (
                        codes.DECODE_OUT_OF_MEMORY,
                        f"the decoder used {rss / 2**20:.0f} MiB, over decode.memory_limit_mb="
                        f"{self.memory_limit // 2**20} above its start",
                    )
                elif waited > self.timeout_s:
                    failure = (
                        codes.DECODE_TIMEOUT,
                        f"decoding took longer than decode.timeout_s={self.timeout_s:g}",
                    )
                elif proc.poll() is not None:
                    failure = self._died(proc)
                continue
            try:
                kind, payload = _read_frame(fd)
            except EOFError:
                failure = self._died(proc)
                continue
            if kind == "row":
                produced += 1
                yield payload
            elif kind == "end":
                return
            elif kind == "infra":
                raise InfrastructureError(payload)
            elif kind == "oom":
                failure = (
                    codes.DECODE_OUT_OF_MEMORY,
                    f"the decoder ran out of memory (decode.memory_limit_mb="
                    f"{self.memory_limit // 2**20}): {payload}",
                )
            else:  # pragma: no cover - a protocol bug
                failure = (codes.DECODER_CRASHED, f"unexpected message {kind!r}")
        # The decoder process is in an unknown state: replace it before the next asset.
        self._kill(proc)
        self.proc = None
        code, message = failure
        log.warning("asset %s: %s (%s)", asset.get("asset_id"), code, message)
        error = RecordError(
            "decode", code, message, segment_index=-1 if produced == 0 else produced
        )
        yield dead_letter_row(asset, error)

    def _died(self, proc: subprocess.Popen[bytes]) -> tuple[str, str]:
        try:
            rc = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return codes.DECODER_CRASHED, "the decoder process stopped answering"
        if rc == -signal.SIGKILL:
            # Not ours (we kill only after deciding the code): the kernel's OOM killer.
            return codes.DECODE_OUT_OF_MEMORY, "the decoder process was killed (SIGKILL)"
        if rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else rc
            return codes.DECODER_CRASHED, f"the decoder process died of signal {name}"
        return codes.DECODER_CRASHED, f"the decoder process exited with status {rc}"


# The decoder processes of this (Ray worker) process, by decode context: reused across tasks.
_PROCESSES: dict[tuple[bytes, float, int], DecoderProcess] = {}


def decoder_process(setup: bytes, timeout_s: float, memory_limit_mb: int) -> DecoderProcess:
    """This process's decoder process for ``setup`` (started on first use)."""
    key = (setup, timeout_s, memory_limit_mb)
    proc = _PROCESSES.get(key)
    if proc is None:
        for old in _PROCESSES.values():  # another run's context: one decoder process at a time
            old.close()
        _PROCESSES.clear()
        proc = _PROCESSES[key] = DecoderProcess(setup, timeout_s, memory_limit_mb)
    return proc


# -- the decoder process's side ---------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the task's process dies (best effort)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _limit_memory(limit: int) -> None:
    """Cap the data segment at ``limit`` bytes above its current size (MemoryError past it)."""
    if limit <= 0:
        return
    with contextlib.suppress(Exception):
        import resource

        data = 0
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmData:"):
                    data = int(line.split()[1]) * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        soft = data + limit
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def serve(limit: int) -> None:
    """The decoder process: read assets from stdin, write their rows to stdout, until EOF."""
    _die_with_parent()
    # The protocol owns file descriptor 1; whatever a decoder prints goes to stderr instead.
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    fd = sys.stdin.fileno()
    from pipelines.stages.decode import decode_asset

    context: tuple[Any, ...] = ()
    while True:
        try:
            kind, payload = _read_frame(fd)
        except EOFError:
            return
        if kind == "setup":
            context = pickle.loads(payload)
            _limit_memory(limit)
            _write_frame(proto, ("ready", None))
            continue
        try:
            for row in decode_asset(payload, *context):
                _write_frame(proto, ("row", row))
        except InfrastructureError as exc:
            _write_frame(proto, ("infra", str(exc)))
            continue
        except MemoryError as exc:
            _write_frame(proto, ("oom", f"{type(exc).__name__}: {exc}"))
            return  # the heap may be in any state: the task starts a fresh process
        _write_frame(proto, ("end", None))


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
