"""The local endpoint as a process: taken ports, stop signals, the bind address, request bodies.

Every test starts ``python -m nova_devkit.emulator`` as a real process and asserts on what a user
would see: the exit code, the error line, how long it took, what answers on the socket.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

# Generous for a loaded 2-core machine; a hang (the bug this guards) never ends at all.
START_S = 60.0
STOP_S = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


class Emulator:
    """One ``python -m nova_devkit.emulator`` process and the lines it printed."""

    def __init__(self, tmp_path: Path, *overrides: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nova_devkit.emulator", *overrides],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, prefix: str, timeout: float = START_S) -> str | None:
        """The first stdout line starting with ``prefix``; None if the process ended first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} line in {timeout}s: {self.lines}") from None
            if line is None:
                return None
            self.lines.append(line)
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()

    def finish(self, timeout: float = STOP_S) -> tuple[int, str, str]:
        """Exit code, rest of stdout and stderr; fails (and kills) if it does not end in time."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the emulator did not stop within {timeout}s") from None
        self._reader.join(timeout=5)
        while (line := self._queue.get_nowait() if not self._queue.empty() else None) is not None:
            self.lines.append(line)
        assert self.proc.stderr is not None
        return self.proc.returncode, "".join(self.lines), self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def emulators(tmp_path: Path) -> Iterator[list[Emulator]]:
    started: list[Emulator] = []
    yield started
    for emu in started:
        emu.kill()


def _start(emulators: list[Emulator], tmp_path: Path, *overrides: str) -> Emulator:
    emu = Emulator(tmp_path, *overrides)
    emulators.append(emu)
    return emu


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize("key", ["emulator.s3_port", "emulator.port"])
def test_a_taken_port_fails_fast_naming_its_key(
    emulators: list[Emulator], tmp_path: Path, taken_port: int, key: str
) -> None:
    other = "emulator.port=0" if key == "emulator.s3_port" else "emulator.s3_port=0"
    started = time.monotonic()
    emu = _start(emulators, tmp_path, f"{key}={taken_port}", other)
    code, out, err = emu.finish(timeout=START_S)
    assert code == 2, (out, err)
    assert f"error: {key}: 127.0.0.1:{taken_port} is in use" in err
    assert "bedrock endpoint" not in out
    assert time.monotonic() - started < START_S


def test_a_second_emulator_on_the_same_s3_port_exits_and_the_first_stops_on_sigterm(
    emulators: list[Emulator], tmp_path: Path
) -> None:
    # The measured hang: two emulators, different Bedrock ports, the same S3 port.
    s3_port = _free_port()
    first = _start(emulators, tmp_path, "emulator.port=0", f"emulator.s3_port={s3_port}")
    assert first.wait_for("s3 endpoint") == f"http://127.0.0.1:{s3_port}"
    second = _start(emulators, tmp_path, "emulator.port=0", f"emulator.s3_port={s3_port}")
    code, _, err = second.finish(timeout=START_S)
    assert code == 2 and "emulator.s3_port" in err
    # The first one still serves, and stops on SIGTERM.
    assert first.proc.poll() is None
    first.proc.send_signal(signal.SIGTERM)
    code, out, _ = first.finish()
    assert code == 0 and out.rstrip().endswith("stopped")
    with socket.socket() as s:  # its port is free again
        s.bind(("127.0.0.1", s3_port))


def test_sigterm_at_any_moment_of_the_start_stops_it(
    emulators: list[Emulator], tmp_path: Path
) -> None:
    # Measured on 2 cores: the endpoints print their URLs 0.6-0.8 s after the process starts;
    # the sweep sends SIGTERM before the handlers exist, while the servers start, and after.
    outcomes = []
    for delay_s in (0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.4, 2.5):
        emu = _start(emulators, tmp_path, "emulator.port=0", "emulator.s3_port=0")
        time.sleep(delay_s)
        emu.proc.send_signal(signal.SIGTERM)
        code, out, err = emu.finish()
        # Before the handlers are installed the default action ends it (-SIGTERM); after, it
        # unwinds what it started and exits 0.
        assert code in (0, -signal.SIGTERM), (delay_s, out, err)
        assert "Traceback" not in err, (delay_s, err)
        outcomes.append((delay_s, code, "bedrock endpoint" in out))
    assert outcomes[-1][1:] == (0, True), outcomes  # a serving emulator stops cleanly


def test_sigterm_while_serving_stops_it_and_frees_both_ports(
    emulators: list[Emulator], tmp_path: Path
) -> None:
    emu = _start(emulators, tmp_path, "emulator.port=0", "emulator.s3_port=0")
    bedrock = emu.wait_for("bedrock endpoint")
    s3 = emu.wait_for("s3 endpoint")
    assert bedrock and s3
    emu.proc.send_signal(signal.SIGTERM)
    code, _, err = emu.finish()
    assert code == 0 and "Traceback" not in err
    for url in (bedrock, s3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", _port_of(url)))


def test_a_host_that_is_not_loopback_is_refused_unless_allowed(
    emulators: list[Emulator], tmp_path: Path
) -> None:
    refused = _start(emulators, tmp_path, "emulator.host=0.0.0.0", "emulator.port=0")
    code, out, err = refused.finish(timeout=START_S)
    assert code == 2, (out, err)
    assert "error: emulator.host: '0.0.0.0' is not a loopback address" in err
    assert "emulator.allow_remote=true" in err and "bedrock endpoint" not in out

    allowed = _start(
        emulators,
        tmp_path,
        "emulator.host=0.0.0.0",
        "emulator.allow_remote=true",
        "emulator.port=0",
        "emulator.s3_port=0",
    )
    assert allowed.wait_for("bedrock endpoint")
    assert any("allow_remote=true" in line for line in allowed.lines)
    allowed.proc.send_signal(signal.SIGTERM)
    assert allowed.finish()[0] == 0


def _request(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, object], float]:
    """Send a raw request (headers, then ``body`` only if given); status, JSON body, seconds."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    elapsed = time.monotonic() - started
    header, _, payload = data.partition(b"\r\n\r\n")
    status = int(header.split()[1])
    return status, json.loads(payload or b"{}"), elapsed


def _complete(data: bytes) -> bool:
    header, _, payload = data.partition(b"\r\n\r\n")
    for line in header.decode().split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            return len(payload) >= int(value)
    return True


def test_request_bodies_over_the_limit_get_413_without_being_read(
    emulators: list[Emulator], tmp_path: Path
) -> None:
    emu = _start(
        emulators,
        tmp_path,
        "emulator.port=0",
        "emulator.s3_port=0",
        "emulator.max_request_bytes=4096",
    )
    port = _port_of(emu.wait_for("bedrock endpoint") or "")
    model = "amazon.nova-2-multimodal-embeddings-v1:0"
    for path in (f"/model/{model}/invoke", "/async-invoke", "/_emulator/config", "/nowhere"):
        # A terabyte declared, not a byte sent: an answer at once proves nothing was read.
        status, body, seconds = _request(
            port,
            f"POST {path} HTTP/1.1\nHost: x\nContent-Type: application/json\n"
            "Content-Length: 1000000000000\n",
        )
        assert status == 413 and "max_request_bytes" in str(body["message"]), (path, body)
        assert seconds < 5
    status, body, _ = _request(
        port, "POST /_emulator/config HTTP/1.1\nHost: x\nContent-Length: ten\n"
    )
    assert status == 400
    # Under the limit the endpoint answers as before (a body of 2 bytes, read).
    status, body, _ = _request(
        port, "POST /_emulator/config HTTP/1.1\nHost: x\nContent-Length: 2\n", b"{}"
    )
    assert status == 200
    stats = _request(port, "GET /_emulator/stats HTTP/1.1\nHost: x\n")
    assert stats[0] == 200 and stats[1]["requests"] == 0  # refused bodies never reached a handler
    emu.proc.send_signal(signal.SIGTERM)
    assert emu.finish()[0] == 0
