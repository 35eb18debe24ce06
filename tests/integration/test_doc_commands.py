"""The shell commands of README.md and docs/*.md, run as written.

Every fenced ``bash`` block is parsed (``\\`` continuations joined, comments dropped) and each
command runs through bash in a copy of the project (what a fresh clone has, plus a small corpus at
``demo_data/`` where ``make demo`` would have put one), in an environment without any AWS
credentials. Only ports are changed: the local endpoint's 8765/8766 and Ray's 6379/8265 become free
ports (added as overrides where the command relies on the defaults). Servers
(``nova_devkit.emulator``) start in the background until their block ends; a ``ray start
--head`` runs in a temporary folder of the test's own and its processes are stopped by id when
the block ends.

A command either runs and must succeed (backfills: a report whose rows are all accounted for), or
is in :data:`SKIP` with the reason. A new block is therefore run by default; a fence without a
language, or a stale :data:`SKIP` entry, fails :func:`test_every_doc_block_is_run_or_skipped`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell"}
OTHER_LANGS = {"text", "python", "yaml", "json", "toml"}

# Command prefix (whitespace normalised) -> why the test does not run it.
SKIP: dict[str, str] = {
    "make demo": "the whole demo (six backfills); tests/integration/test_demo.py runs its code",
    "make test": "the test suite itself: CI runs it",
    ".venv/bin/python -m jobs.backfill usecase=document_retrieval manifest=s3://bucket/": (
        "needs AWS credentials and an S3 bucket"
    ),
    ".venv/bin/python -m jobs.backfill usecase=mixed_media manifest=m.parquet qdrant=server": (
        "needs a Qdrant server"
    ),
    "ray job submit --working-dir . -- python -m jobs.backfill ray=cluster": (
        "needs AWS, a Qdrant server and a cluster; docs/running-on-ray.md's local recipe runs"
    ),
    ".venv/bin/python -m jobs.manifest source=s3://bucket/": "needs AWS credentials and a bucket",
    "ray job submit --address http://127.0.0.1:8265 --working-dir . -- "
    "python -m jobs.backfill ray=cluster usecase=product_search manifest=s3://": (
        "needs AWS credentials and a Qdrant server"
    ),
    "ray stop": (
        "stops every Ray process on the machine, other users' too; the test stops its own head "
        "by process id"
    ),
}
# Long-running servers: started in the background, ready once they print their URL.
SERVERS = (
    "python -m nova_devkit.emulator",
    ".venv/bin/python -m nova_devkit.emulator",
    "make emulator",
)
SERVER_READY = "bedrock endpoint:"
# Commands that change the shell's state: they precede every later command of their block.
STATE = ("source ", "export ", "cd ")


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


@dataclass
class Block:
    doc: str
    line: int
    lang: str
    commands: list[Command] = field(default_factory=list)


def parse_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file; shell blocks with their commands."""
    blocks: list[Block] = []
    doc = path.relative_to(ROOT).as_posix()
    current: Block | None = None
    pending: list[str] = []
    pending_line = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        fence = re.match(r"^\s*```(\S*)\s*$", raw)
        if fence and current is None:
            current = Block(doc, number, fence.group(1).lower())
            continue
        if fence and current is not None:
            assert not pending, f"{doc}:{pending_line}: a continuation runs into the fence"
            blocks.append(current)
            current = None
            continue
        if current is None or current.lang not in SHELL_LANGS:
            continue
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not line.strip():
            continue
        if not pending:
            pending_line = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        text = " ".join(" ".join(pending).split())
        current.commands.append(Command(doc, pending_line, text))
        pending = []
    assert current is None, f"{doc}:{current.line}: unclosed fence"
    return blocks


def skip_reason(cmd: Command) -> str | None:
    reasons = [reason for prefix, reason in SKIP.items() if cmd.text.startswith(prefix)]
    assert len(reasons) <= 1, f"{cmd}: more than one SKIP entry matches"
    return reasons[0] if reasons else None


def all_blocks() -> list[Block]:
    return [b for doc in DOCS for b in parse_blocks(doc)]


def test_every_doc_block_is_run_or_skipped() -> None:
    """Every fence says its language; every shell command runs or is skipped with a reason; no
    SKIP entry is stale."""
    blocks = all_blocks()
    untagged = [f"{b.doc}:{b.line}" for b in blocks if b.lang not in SHELL_LANGS | OTHER_LANGS]
    assert not untagged, f"fences without a known language (use ```bash or ```text): {untagged}"
    commands = [c for b in blocks if b.lang in SHELL_LANGS for c in b.commands]
    empty = [f"{b.doc}:{b.line}" for b in blocks if b.lang in SHELL_LANGS and not b.commands]
    assert not empty, f"shell blocks without a command: {empty}"
    for prefix in SKIP:
        assert any(c.text.startswith(prefix) for c in commands), f"stale SKIP entry: {prefix!r}"
    run = [c for c in commands if skip_reason(c) is None]
    # The ones this issue is about must keep running.
    assert any("jobs.backfill" in c.text and "bedrock=emulator" in c.text for c in run)
    assert any(c.text.startswith("ray job submit --address") for c in run)
    assert any(c.text.startswith(SERVERS) for c in run)


# -- running them --------------------------------------------------------------------------


def _free_port() -> int:
    """A free TCP port outside Ray's default worker port range (10002-19999)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 20000:
            return port


def _kill_tree_matching(marker: str) -> int:
    """Stop every process whose command line contains ``marker`` (this test's own Ray temp
    folder) and their descendants, by process id. Returns how many there were."""
    import psutil

    me = os.getpid()
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.pid != me and marker in " ".join(proc.info["cmdline"] or []):
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
        except psutil.Error:
            continue
    for proc in found.values():
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    # A head's gcs_server and one of its Python helpers never exit on SIGTERM (measured: still
    # there after 20 s, the rest gone within 2 s): a grace of at most 5 s, cut short once a
    # second has passed without another process exiting, then SIGKILL.
    alive = list(found.values())
    started = last_exit = time.monotonic()
    while alive and (now := time.monotonic()) - started < 5 and now - last_exit < 1:
        gone, alive = psutil.wait_procs(alive, timeout=0.2)
        if gone:
            last_exit = time.monotonic()
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return len(found)


class Server:
    """A background command, its output drained by a thread."""

    def __init__(self, script: str, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_ready(self, marker: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if marker in self.lines.get(timeout=0.5):
                    return
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
        raise AssertionError(f"server not ready ({marker!r}):\n{''.join(self.output)[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)


@dataclass
class Workspace:
    """A copy of the project with a small corpus, free ports and an environment without AWS
    credentials."""

    root: Path
    env: dict[str, str]
    ray_tmp: str
    ports: dict[str, int]

    def adapt(self, text: str) -> str:
        """The command with the documented ports replaced by this workspace's."""
        for default, name in (("8765", "bedrock"), ("8766", "s3"), ("6379", "gcs")):
            text = re.sub(rf"(?<![\d.]){default}(?!\d)", str(self.ports[name]), text)
        text = re.sub(r"(?<![\d.])8265(?!\d)", str(self.ports["dashboard"]), text)
        bedrock = f"http://127.0.0.1:{self.ports['bedrock']}"
        s3 = f"http://127.0.0.1:{self.ports['s3']}"
        extra: list[str] = []
        if "nova_devkit.emulator" in text:
            if "emulator.port=" not in text:
                extra.append(f"emulator.port={self.ports['bedrock']}")
            if "emulator.s3_port=" not in text:
                extra.append(f"emulator.s3_port={self.ports['s3']}")
        jobs = ("jobs.backfill", "jobs.migrate", "jobs.search", "jobs.evaluate")
        if any(j in text for j in jobs) and "bedrock=emulator" in text:
            if "bedrock.endpoint_url=" not in text:
                extra.append(f"bedrock.endpoint_url={bedrock}")
            if "bedrock.s3_endpoint_url=" not in text:
                extra.append(f"bedrock.s3_endpoint_url={s3}")
        if text.startswith("ray start --head"):
            # Ports a second head on the machine would otherwise share with the first.
            extra.append(f"--ray-client-server-port={self.ports['ray_client']}")
            extra.append(f"--dashboard-agent-listen-port={self.ports['agent']}")
        return " ".join([text, *extra])


def _copy_project(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)  # keeps mtimes: make sees an installed venv
    # The documented commands use .venv/: the interpreter running the tests.
    (dest / ".venv").symlink_to(sys.prefix, target_is_directory=True)


def _make_corpus(root: Path) -> None:
    """What `make demo` leaves in demo_data/, in small and at the same paths: three photos, two
    inline texts, a query picture and the query set (queries.parquet)."""
    from nova_devkit.media import (
        TOPICS,
        article_topic,
        make_article,
        make_near_duplicate,
        make_product_photo,
    )

    corpus = root / "demo_data" / "corpus" / "images"
    corpus.mkdir(parents=True)
    queries = root / "demo_data" / "queries"
    queries.mkdir()
    rows = []
    for i in range(3):
        photo = make_product_photo(corpus / f"product-00{i}.jpg", seed=i, size=(160, 120))
        rows.append({"asset_id": f"product-00{i}", "uri": str(photo.resolve()), "text": None})
    for i in (1, 2):
        rows.append(
            {"asset_id": f"article-{i}", "uri": None, "text": make_article(i, paragraphs=2)}
        )
    pq.write_table(pa.Table.from_pylist(rows), root / "demo_data" / "manifest.parquet")
    query = make_near_duplicate(corpus / "product-001.jpg", queries / "product-001-query.jpg", 9)
    query_set = [
        {
            "uri": str(query.resolve()),
            "text": None,
            "asset_ids": ["product-001"],
            "kind": "re-shoot",
        },
        {
            "uri": None,
            "text": " ".join(TOPICS[article_topic(2)][1][:8]),
            "asset_ids": ["article-2"],
            "kind": "topic words",
        },
    ]
    pq.write_table(pa.Table.from_pylist(query_set), root / "demo_data" / "queries.parquet")


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    root = tmp_path / "project"
    root.mkdir()
    _copy_project(root)
    _make_corpus(root)
    empty = tmp_path / "empty-aws-file"
    empty.write_text("")
    # A home of its own: no ~/.aws, no Ray token (as on a fresh machine), the real one untouched.
    home = tmp_path / "home"
    home.mkdir()
    # Short: Ray's socket paths live under it.
    ray_tmp = tempfile.mkdtemp(prefix="raydoc-", dir="/tmp")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "RAY_")) and k not in ("PYTHONPATH", "QDRANT_API_KEY")
    }
    env.update(
        HOME=str(home),
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_EC2_METADATA_DISABLED="true",
        RAY_TMPDIR=ray_tmp,
        RAY_USAGE_STATS_ENABLED="0",
    )
    names = ("bedrock", "s3", "gcs", "dashboard", "ray_client", "agent")
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(names):
        ports = {name: _free_port() for name in names}
    try:
        yield Workspace(root, env, ray_tmp, ports)
    finally:
        _kill_tree_matching(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _check_backfill(cmd: str, output: str, ws: Workspace) -> None:
    """The job printed its report path, and the report accounts for every row."""
    found = re.findall(r"\[backfill\] report:\s+(\S+)", output)
    assert found, f"no report path printed by: {cmd}\n{output[-3000:]}"
    report = json.loads((ws.root / found[-1]).read_text())
    outcomes = ("embedded", "skipped_unchanged", "skipped_modality", "dead_lettered")
    assert report["rows"] > 0
    assert sum(report[k] for k in outcomes) == report["rows"], report
    # Batch inference (bedrock.mode=batch) embeds through jobs: no InvokeModel call.
    called = report["bedrock_calls"] > 0 or report.get("batch", {}).get("records_collected", 0) > 0
    assert report["embedded"] > 0 and called, report
    assert report["count_check"]["ok"], report["count_check"]
    if "bedrock=emulator" in cmd:
        # No credentials anywhere: the job supplied them to its driver and workers itself.
        assert "using dummy credentials for the loopback endpoints" in output


def _check_estimate(cmd: str, output: str, ws: Workspace) -> None:
    """The job printed its estimate's path; the estimate accounts for every row."""
    found = re.findall(r"\[estimate\] estimate:\s+(\S+)", output)
    assert found, f"no estimate path printed by: {cmd}\n{output[-3000:]}"
    est = json.loads((ws.root / found[-1]).read_text())
    assert est["rows"] > 0
    skipped = ("skipped_unchanged", "skipped_dead_letter", "skipped_modality")
    assert est["to_embed"] + sum(est[k] for k in skipped) == est["rows"], est
    if est["mode"] == "dry_run" and est["to_embed"]:
        assert est["bedrock_calls"] > 0 and est["cost_usd"] > 0, est


def _run_block(block: Block, ws: Workspace, log: list[str]) -> None:
    prelude: list[str] = []
    servers: list[Server] = []
    try:
        for cmd in block.commands:
            reason = skip_reason(cmd)
            if reason is not None:
                log.append(f"skipped {cmd}  ({reason})")
                continue
            text = ws.adapt(cmd.text)
            script = "".join(f"{p}\n" for p in prelude)
            env = dict(ws.env)
            if ("jobs.backfill" in text or "jobs.migrate" in text) and "ray=cluster" not in text:
                # ray=local must start a Ray of its own, never join another cluster (the one
                # in RAY_ADDRESS, or the last `ray start` on the machine): joining this one fails.
                env["RAY_ADDRESS"] = "another-cluster-must-not-be-joined"
            started = time.monotonic()
            if cmd.text.startswith(SERVERS):
                server = Server(script + "exec " + text, ws.root, env)
                servers.append(server)
                server.wait_ready(SERVER_READY)
                log.append(f"started {cmd}  ({time.monotonic() - started:.1f}s)")
                continue
            proc = subprocess.run(
                ["bash", "-c", script + text],
                cwd=ws.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            output = proc.stdout + proc.stderr
            assert proc.returncode == 0, f"{cmd}\n  ran as: {text}\n{output[-4000:]}"
            estimate = "jobs.estimate" in text or re.search(r"\b(dry_run|plan_only)=true", text)
            if estimate and "--help" not in text:
                _check_estimate(text, output, ws)
            elif "jobs.backfill" in text and "--help" not in text:
                _check_backfill(text, output, ws)
                # A local run starts a Ray of its own: RAY_ADDRESS points nowhere (see _env), so
                # joining a cluster would have failed; and the job keeps Ray's INFO lines off the
                # console (`ray job submit`'s own CLI prints some: not the job's).
                if "ray job submit" not in text:
                    assert not re.search(r"\bINFO\b", output), output[-3000:]
                if "ray job submit" in text:
                    assert "succeeded" in output, output[-3000:]
            if "jobs.migrate" in text:
                found = re.findall(r"\[migrate\] report:\s+(\S+)", output)
                assert found, f"no report path printed by: {cmd}\n{output[-3000:]}"
                report = json.loads((ws.root / found[-1]).read_text())
                assert report["outcome"] in ("switched", "rolled_back", "nothing_to_do"), report
            if "jobs.manifest" in text:
                rows = re.findall(r"manifest: \S+ \((\d+) rows\)", output)
                assert rows and int(rows[-1]) > 0, output[-3000:]
            if cmd.text.startswith(STATE):
                prelude.append(text)
            log.append(f"ran     {cmd}  ({time.monotonic() - started:.1f}s)")
    finally:
        for server in servers:
            server.stop()
        _kill_tree_matching(ws.ray_tmp)


DOCS_WITH_COMMANDS = [
    d for d in DOCS if any(b.lang in SHELL_LANGS and b.commands for b in parse_blocks(d))
]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("doc", DOCS_WITH_COMMANDS, ids=lambda d: d.relative_to(ROOT).as_posix())
def test_doc_commands_run_as_written(doc: Path, workspace: Workspace) -> None:
    log: list[str] = []
    try:
        for block in parse_blocks(doc):
            if block.lang in SHELL_LANGS:
                _run_block(block, workspace, log)
    finally:
        print("\n".join(log))
    assert any(line.startswith("ran") for line in log)
