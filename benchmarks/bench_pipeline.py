"""The whole backfill against the plain library loop: CPU-seconds and wall time per unit.

Usage: ``python -m benchmarks.bench_pipeline [--quick] [--kinds pdf image audio video]
[--dims 1024 3072] [--seconds 60] [--no-isolate] [--json out.json]``

For each kind of media (PDF pages, images, audio, video) and each dimension, in one run:

1. the **plain loop** on every core (one spawned process per core, warm, taking one file at a
   time) doing what the pipeline's decoder does with the same library: PyMuPDF render at the
   configured dpi + PNG; Pillow decode (reduced DCT scale) + LANCZOS resize to the longest side
   + JPEG; PyAV decode/resample/encode of 29.95 s windows (the loops of
   :mod:`benchmarks.bench_decode`). For PDF pages the targets' loop is the issue's, a plain
   PyMuPDF loop (PyMuPDF's own PNG, ``tobytes("png")``); the decoder encodes the same pixels
   with :func:`pipelines.stages._png.encode_png` at ~0.4 of that CPU, so a second loop with the
   decoder's encoder runs too and the ratios against it (``*_vs_decoder_png``) show what the
   pipeline adds to the same work;
2. the **whole backfill**, ``python -m jobs.backfill`` in a subprocess (its own local Ray,
   embedded Qdrant in a temp folder), against the local endpoint running in **another**
   process (started once, not a descendant of the job: its CPU is not counted, and it does not
   decode images: ``emulator.image_content_features=false``), with no quota
   and no latency at the endpoint and a huge quota configured in the job.

While the job runs, a thread samples every process of the job's tree (the driver, Ray's GCS,
raylet and helpers, the Ray workers, the decoder subprocesses) every 0.2 s with psutil and
attributes each process's CPU time to a role by what it is doing (Ray sets a worker's process
title to the task or actor it runs): ``decode`` (decode tasks), ``decoder_subprocess`` (decode
isolation, :mod:`pipelines.stages.decode_isolated`), ``embed`` (embed actors), ``writer`` (server
mode's write actors; in embedded mode the write stage's CPU in the driver, which the run report
gives as ``write_cpu_s``), ``driver`` (the job's own process without the writer: planning, Ray
Data's executor, the ledger and journal, the console), ``quota_actor`` (the cluster-wide rate
budget), ``ray_system`` (GCS, raylet, dashboard and runtime-env agents, log monitor, idle
workers, Ray Data's own actors and metadata tasks; its share is also printed by process). A
worker's CPU between two samples goes to the work role it had at either end. A process that
ends between two samples loses at most 0.2 s of CPU from the figure.

Printed per kind and dimension:

- ``cpu_ratio`` = pipeline CPU-seconds / plain loop CPU-seconds (target <= 1.3 for PDF pages and
  images);
- ``wall_ratio`` = plain loop wall on every core / pipeline wall (the job's whole process, Ray's
  start-up included), i.e. the pipeline's throughput per core as a fraction of the plain loop's
  (target >= 0.8 for PDF pages and images); ``wall_ratio_steady`` uses the run's own
  ``duration_s`` (from planning to the end, Ray's start-up excluded), for information;
- the CPU split by role, in CPU-seconds and per unit.

Audio and video are printed with the same figures, without a target (the issue sets targets for
PDF pages and images). ``--quick`` sizes each plain loop at ~8 s of one core (a smoke check; Ray's
start-up then dominates the wall ratio); the default sizes it at ``--seconds`` (60) of one core
per kind, i.e. several minutes of pipeline over all kinds and dimensions.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._common import (
    BenchResult,
    dump_json,
    machine_line,
    scratch_dir,
    write_manifest,
)

CPU_TARGET = 1.3
WALL_TARGET = 0.8
TARGETED = ("pdf", "image")
# PDF pages also run a plain loop with the decoder's PNG encoder (printed beside the targets).
SAME_ENCODER = "pdf_decoder_png"
KINDS = ("pdf", "image", "audio", "video")
IMAGE_SIZE = (3000, 2000)  # over image_max_side (2048): decoded, resized and re-encoded
IMAGE_MAX_SIDE = 2048
# Plain-loop seconds of one core per unit, measured on the bench machine; only used to size the
# corpora (the figures are measured, not derived from these).
UNIT_COST_S = {"pdf": 0.03, "image": 0.09, "audio": 0.03, "video": 0.12}
USECASE = {
    "pdf": "document_retrieval",
    "image": "product_search",
    "audio": "audio_fingerprinting",
    "video": "video_clip_search",
}


@dataclass
class Corpus:
    kind: str
    modality: str
    paths: list[Path]
    units: float
    unit: str


# -- corpora ---------------------------------------------------------------------------------------


def build_corpus(root: Path, kind: str, plain_seconds: float, skew: bool = False) -> Corpus:
    """Files of one kind holding about ``plain_seconds`` of plain-loop work on one core.

    ``skew`` (PDF only): two documents hold 40 % of the pages, the rest are 30-page ones, like
    the issue's corpus where two of 42 files held 440 of 534 pages: without splitting, those two
    bound the run."""
    from benchmarks._media import media_seconds, repeat_media
    from benchmarks.bench_decode import _copies

    units = max(1.0, plain_seconds / UNIT_COST_S[kind])
    if kind == "pdf":
        from nova_devkit.media.docs import make_pdf

        pages = 30
        big: list[Path] = []
        if skew:
            big_pages = max(pages, round(units * 0.2))
            big = [make_pdf(root / f"big{i}.pdf", pages=big_pages, seed=90 + i) for i in range(2)]
            units -= 2 * big_pages
        docs = max(2, round(units / pages))
        distinct = [make_pdf(root / f"src{i:02d}.pdf", pages=pages, seed=i) for i in range(8)]
        paths = [
            Path(shutil.copyfile(distinct[i % len(distinct)], root / f"doc{i:04d}.pdf"))
            for i in range(docs)
        ]
        # The big ones first: where a manifest puts them matters less than their size.
        total = float(docs * pages + sum(_pdf_pages(p) for p in big))
        return Corpus(kind, "document", big + paths, total, "pages")
    if kind == "image":
        from nova_devkit.media.docs import make_product_photo

        n = max(4, round(units))
        distinct = [
            make_product_photo(root / f"photo{i:02d}.jpg", seed=i, size=IMAGE_SIZE)
            for i in range(8)
        ]
        paths = [
            Path(shutil.copyfile(distinct[i % len(distinct)], root / f"img{i:05d}.jpg"))
            for i in range(n)
        ]
        return Corpus(kind, "image", paths, float(n), "images")
    if kind == "audio":
        from nova_devkit.media.av import make_tone_audio

        clip = make_tone_audio(root / "clip.mp3", 60, kind="music", sample_rate=44100)
        files = max(2, round(units / 300))
        paths = _copies(repeat_media(clip, root / "audio.mp3", 5), root, "audio", files)
        return Corpus(kind, "audio", paths, sum(map(media_seconds, paths)), "s")
    from nova_devkit.media.av import make_video

    # Sparse keyframes: the pipeline re-encodes (the expensive path).
    clip = make_video(root / "clip_video.mp4", 60, fps=15, size=(320, 240), gop=600)
    files = max(2, round(units / 180))
    paths = _copies(repeat_media(clip, root / "video.mp4", 3), root, "video", files)
    return Corpus(kind, "video", paths, sum(map(media_seconds, paths)), "s")


def _pdf_pages(path: Path) -> int:
    import pymupdf

    with pymupdf.open(path) as doc:
        return int(doc.page_count)


# -- plain loops -----------------------------------------------------------------------------------


def plain_image(paths: list[Path]) -> int:
    """Pillow as the image decoder does it: reduced-scale JPEG decode, LANCZOS resize, JPEG."""
    from PIL import Image

    from pipelines.stages.decode_image import JPEG_QUALITY

    for path in paths:
        with Image.open(path) as im:
            w, h = im.size
            scale = min(1.0, IMAGE_MAX_SIDE / max(w, h))
            im.draft(None, (max(1, round(w * scale)), max(1, round(h * scale))))
            im.load()
            out = im.convert("RGB") if im.mode != "RGB" else im
            out.thumbnail(
                (IMAGE_MAX_SIDE, IMAGE_MAX_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0
            )
            buf = io.BytesIO()
            out.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    return len(paths)


def _plain(kind: str) -> Callable[[list[Path]], int]:
    from benchmarks import bench_decode

    return {
        # The baseline: a plain PyMuPDF loop (render + PyMuPDF's own PNG).
        "pdf": bench_decode.plain_pdf_library_png,
        # The same pixels through the decoder's cheaper PNG encoder: the pipeline's overhead.
        SAME_ENCODER: bench_decode.plain_pdf,
        "image": plain_image,
        "audio": bench_decode.plain_audio,
        "video": bench_decode.plain_video_reencode,
    }[kind]


def _warm() -> None:
    import av  # noqa: F401
    import pymupdf  # noqa: F401
    from PIL import Image  # noqa: F401

    import pipelines.stages.decode_image  # noqa: F401


def _plain_one(job: tuple[str, Path]) -> tuple[int, float]:
    kind, path = job
    cpu = time.process_time()
    n = _plain(kind)([path])
    return n, time.process_time() - cpu


def plain_every_core(pool: Any, kind: str, paths: list[Path]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the plain loop over ``paths`` on every core."""
    t = time.monotonic()
    cpu = 0.0
    for _, c in pool.imap_unordered(_plain_one, [(kind, p) for p in paths]):
        cpu += c
    return time.monotonic() - t, cpu


# -- CPU by role -----------------------------------------------------------------------------------

ROLES = (
    "decode",
    "decoder_subprocess",
    "embed",
    "writer",
    "driver",
    "quota_actor",
    "ray_system",
)


def role_of(pid: int, root_pid: int, cmdline: list[str]) -> str:
    """What a process of the job's tree is doing (Ray sets a worker's title to its task)."""
    if pid == root_pid:
        return "driver"
    text = " ".join(cmdline)
    if "decode_isolated" in text:
        return "decoder_subprocess"
    if text.startswith("ray::"):
        # The runner names Ray Data's operators after their stages (pipelines/core/runner.py:
        # _named): decode tasks are `ray::MapBatches(decode)->...`, the embed actors
        # `ray::MapWorker(MapBatches(embed))`, server mode's write actors
        # `ray::MapWorker(MapBatches(write))`. In embedded mode the writer runs in the driver:
        # see split_driver.
        stage = re.search(r"MapBatches\((\w+)\)", text)
        if stage:
            name = stage.group(1)
            if name == "write":
                return "writer"
            return "embed" if "MapWorker(" in text else "decode"
        if "QuotaGuard" in text or "nova-mme-quota" in text:
            return "quota_actor"
    # GCS, raylet, dashboard and runtime-env agents, idle workers, Ray Data's own actors and
    # metadata tasks.
    return "ray_system"


def _short_name(cmdline: list[str]) -> str:
    """A Ray process's name: its title (``ray::IDLE``) or its program (``gcs_server``)."""
    if not cmdline:
        return "?"
    if cmdline[0].startswith("ray::"):
        return cmdline[0].split("(")[0].split(".")[0].strip()
    for arg in cmdline[:3]:
        base = os.path.basename(arg)
        if base and not base.startswith(("python", "-")):
            return base.removesuffix(".py")
    return os.path.basename(cmdline[0])


@dataclass
class RoleCpu:
    """CPU seconds of a process tree by role, sampled (see the module docstring)."""

    root_pid: int
    interval_s: float = 0.2
    last: dict[tuple[int, float], float] = field(default_factory=dict)
    by_role: dict[str, float] = field(default_factory=dict)
    # ray_system's CPU by process (gcs_server, raylet, agents, idle workers, ...).
    ray_detail: dict[str, float] = field(default_factory=dict)
    roles: dict[tuple[int, float], str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.root_pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for proc in procs:
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    times = proc.cpu_times()
                    cmd = proc.cmdline()
            except psutil.Error:
                continue
            now = float(times.user + times.system)
            delta = now - self.last.get(key, 0.0)
            self.last[key] = now
            role = role_of(proc.pid, self.root_pid, cmd)
            # A worker's title is its task's while it runs and ray::IDLE after: CPU since the
            # last sample is charged to the work role seen at either end (an idle worker
            # spends next to nothing), not to whatever the title is now.
            before = self.roles.get(key, role)
            self.roles[key] = role
            if role == "ray_system" and before != "ray_system":
                role = before
            self.by_role[role] = self.by_role.get(role, 0.0) + max(0.0, delta)
            if role == "ray_system":
                name = _short_name(cmd)
                self.ray_detail[name] = self.ray_detail.get(name, 0.0) + max(0.0, delta)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="role-cpu", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def split_driver(self, writer_s: float) -> None:
        """Move the embedded writer's CPU (the run report's ``write_cpu_s``: the write stage's
        thread time in the driver) from ``driver`` to ``writer``."""
        moved = min(max(writer_s, 0.0), self.by_role.get("driver", 0.0))
        self.by_role["driver"] = self.by_role.get("driver", 0.0) - moved
        self.by_role["writer"] = self.by_role.get("writer", 0.0) + moved

    @property
    def total(self) -> float:
        return sum(self.by_role.values())


# -- the endpoint and the job ------------------------------------------------------------------


class Endpoint:
    """The local Bedrock endpoint in a process of its own (no quota, no latency)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nova_devkit.emulator",
                "emulator.port=0",
                "emulator.s3_port=0",
                "emulator.max_recorded_requests=100",
                # Page images are not decoded at the endpoint: its CPU is on the same cores.
                "emulator.image_content_features=false",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.bedrock_url = self.s3_url = ""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (self.bedrock_url and self.s3_url):
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.match(r"(bedrock|s3) endpoint: (\S+)", line.strip())
            if m:
                setattr(self, f"{m.group(1)}_url", m.group(2))
        if not (self.bedrock_url and self.s3_url):
            self.close()
            raise RuntimeError("the local endpoint did not start")

    def cpu_s(self) -> float:
        """CPU seconds the endpoint has used so far (not the pipeline's, but on the same cores:
        reported beside the figures, since it competes with the job for them)."""
        import psutil

        try:
            t = psutil.Process(self.proc.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    def overrides(self) -> list[str]:
        return [
            "bedrock=emulator",
            f"bedrock.endpoint_url={self.bedrock_url}",
            f"bedrock.s3_endpoint_url={self.s3_url}",
        ]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_job(
    corpus: Corpus, dim: int, root: Path, endpoint: Endpoint, extra: list[str]
) -> dict[str, Any]:
    """``python -m jobs.backfill`` on the corpus; wall, report and CPU by role."""
    tag = f"{corpus.kind}_{dim}"
    manifest = write_manifest(
        [
            # A distinct content_version per row: copies of one file are otherwise embedded once
            # and copied (the run's dedup), and the benchmark would measure the copy path.
            {
                "asset_id": f"{tag}-{i}",
                "uri": str(p),
                "modality": corpus.modality,
                "content_version": f"{tag}-{i}",
            }
            for i, p in enumerate(corpus.paths)
        ],
        root / f"{tag}.parquet",
    )
    run_dir = root / f"runs-{tag}"
    cmd = [
        sys.executable,
        "-m",
        "jobs.backfill",
        f"usecase={USECASE[corpus.kind]}",
        f"manifest={manifest}",
        f"embedding.dimension={dim}",
        *endpoint.overrides(),
        "bedrock.quota.requests_per_minute=10000000",
        "bedrock.quota.tokens_per_minute=100000000000",
        f"qdrant.path={root / ('qdrant-' + tag)}",
        f"qdrant.collection=bench_{tag}",
        f"state.path={root / ('state-' + tag)}",
        f"run_dir={run_dir}",
        *extra,
    ]
    env = dict(os.environ, RAY_DATA_DISABLE_PROGRESS_BARS="1")
    endpoint_cpu = endpoint.cpu_s()
    t = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    sampler = RoleCpu(proc.pid)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.monotonic() - t
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"backfill exited {proc.returncode}:\n{out[-3000:]}")
    reports = sorted(run_dir.rglob("report.json"))
    report = json.loads(reports[-1].read_text()) if reports else {}
    sampler.split_driver(float(report.get("write_cpu_s") or 0.0))
    return {
        "wall_s": wall,
        "report": report,
        "cpu": sampler,
        "endpoint_cpu_s": endpoint.cpu_s() - endpoint_cpu,
    }


# -- main ------------------------------------------------------------------------------------------


def _one(unit: str) -> str:
    """A unit's singular, for "ms per ...": pages -> page, s -> s of media."""
    return "s of media" if unit == "s" else unit.removesuffix("s")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


def run(
    quick: bool = False,
    kinds: list[str] | None = None,
    dims: list[int] | None = None,
    seconds: float = 60.0,
    extra: list[str] | None = None,
    skew: bool = False,
) -> BenchResult:
    kinds = kinds or list(KINDS)
    dims = dims or [1024, 3072]
    extra = extra or []
    res = BenchResult("pipeline")
    print(f"== bench_pipeline ({'quick' if quick else 'full'}) ==", flush=True)
    print(machine_line(), flush=True)
    cpus = os.cpu_count() or 1
    with scratch_dir("bench-pipeline-") as root:
        endpoint = Endpoint()
        pool = multiprocessing.get_context("spawn").Pool(cpus, initializer=_warm)
        pool.map(abs, range(cpus))
        try:
            for kind in kinds:
                media = root / "media" / kind
                media.mkdir(parents=True)
                corpus = build_corpus(media, kind, 8.0 if quick else seconds, skew)
                res.figure(
                    f"pipeline.{kind}.corpus",
                    f"{len(corpus.paths)} files, {corpus.units:.0f} {corpus.unit}",
                )
                plain_wall, plain_cpu = plain_every_core(pool, kind, corpus.paths)
                res.figure(
                    f"pipeline.{kind}.plain",
                    f"wall {plain_wall:.1f}s on {cpus} cores, CPU {plain_cpu:.1f}s "
                    f"({plain_cpu / corpus.units * 1000:.1f} ms per {_one(corpus.unit)}); "
                    f"load {_load()}",
                )
                same: tuple[float, float] | None = None
                if kind == "pdf":
                    same = plain_every_core(pool, SAME_ENCODER, corpus.paths)
                    res.figure(
                        f"pipeline.{kind}.plain_decoder_png",
                        f"wall {same[0]:.1f}s, CPU {same[1]:.1f}s "
                        f"({same[1] / corpus.units * 1000:.1f} ms per {_one(corpus.unit)})",
                    )
                for dim in dims:
                    job = run_job(corpus, dim, root, endpoint, extra)
                    # The plain loop again after the job: the machine's speed drifts, the
                    # ratio uses the mean of the loop before and after.
                    wall2, cpu2 = plain_every_core(pool, kind, corpus.paths)
                    p_wall, p_cpu = (plain_wall + wall2) / 2, (plain_cpu + cpu2) / 2
                    plain_wall, plain_cpu = wall2, cpu2
                    sampler: RoleCpu = job["cpu"]
                    rep = job["report"]
                    prefix = f"pipeline.{kind}.{dim}"
                    steady = float(rep.get("duration_s") or job["wall_s"])
                    res.figure(
                        f"{prefix}.run",
                        f"wall {job['wall_s']:.1f}s (run duration {steady:.1f}s), CPU "
                        f"{sampler.total:.1f}s ({sampler.total / corpus.units * 1000:.1f} ms per "
                        f"{_one(corpus.unit)}), {rep.get('points_written')} points, "
                        f"{rep.get('dead_lettered')} dead; plain mean wall {p_wall:.1f}s CPU "
                        f"{p_cpu:.1f}s; load {_load()}",
                    )
                    split = ", ".join(
                        f"{r} {sampler.by_role.get(r, 0.0):.1f}s "
                        f"({sampler.by_role.get(r, 0.0) / max(sampler.total, 1e-9):.0%})"
                        for r in ROLES
                    )
                    res.figure(f"{prefix}.cpu_by_role", split)
                    res.figure(
                        f"{prefix}.endpoint_cpu_s",
                        f"{job['endpoint_cpu_s']:.1f} (not counted; on the same cores)",
                    )
                    res.figure(
                        f"{prefix}.ray_system_by_process",
                        ", ".join(
                            f"{k} {v:.1f}s"
                            for k, v in sorted(sampler.ray_detail.items(), key=lambda kv: -kv[1])
                            if v >= 0.05
                        ),
                    )
                    res.figures[f"{prefix}.cpu_by_role_s"] = {
                        r: round(sampler.by_role.get(r, 0.0), 2) for r in ROLES
                    }
                    cpu_ratio = sampler.total / max(p_cpu, 1e-9)
                    wall_ratio = p_wall / job["wall_s"]
                    res.figure(f"{prefix}.wall_ratio_steady", round(p_wall / steady, 3))
                    if same is not None:
                        # Against the loop with the decoder's encoder: what the pipeline adds.
                        s_wall, s_cpu = plain_every_core(pool, SAME_ENCODER, corpus.paths)
                        m_wall, m_cpu = (same[0] + s_wall) / 2, (same[1] + s_cpu) / 2
                        same = (s_wall, s_cpu)
                        res.figure(
                            f"{prefix}.cpu_ratio_vs_decoder_png",
                            round(sampler.total / max(m_cpu, 1e-9), 3),
                        )
                        res.figure(
                            f"{prefix}.wall_ratio_vs_decoder_png", round(m_wall / job["wall_s"], 3)
                        )
                    if kind in TARGETED:
                        res.check(f"{prefix}.cpu_ratio", cpu_ratio, "<=", CPU_TARGET)
                        res.check(f"{prefix}.wall_ratio", wall_ratio, ">=", WALL_TARGET)
                    else:
                        res.figure(f"{prefix}.cpu_ratio", round(cpu_ratio, 3))
                        res.figure(f"{prefix}.wall_ratio", round(wall_ratio, 3))
        finally:
            pool.terminate()
            endpoint.close()
    print(f"pipeline: {'PASS' if res.passed else 'MISS'}", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="~8 s of plain work per kind")
    ap.add_argument("--kinds", nargs="*", choices=list(KINDS), help="subset of media kinds")
    ap.add_argument("--dims", nargs="*", type=int, choices=[1024, 3072], help="dimensions")
    ap.add_argument(
        "--seconds", type=float, default=60.0, help="plain-loop seconds of one core per kind"
    )
    ap.add_argument(
        "--set", nargs="*", default=[], help="extra job overrides (e.g. decode.isolate=false)"
    )
    ap.add_argument("--skew", action="store_true", help="PDF: two documents hold 40%% of the pages")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args(argv)
    res = run(args.quick, args.kinds, args.dims, args.seconds, args.set, args.skew)
    dump_json(res, args.json)
    return 0 if res.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
