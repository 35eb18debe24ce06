"""What ``pip install .`` ships: the library, its jobs and their configs; nothing of the devkit.

Builds both wheels from a copy of the checkout (no build isolation, no index: offline), reads
their file lists and METADATA, installs them with ``pip install --no-deps --target`` and runs the
jobs from another working directory with only that target on ``PYTHONPATH`` ahead of the venv.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# Never copied into the build tree: local state, caches and earlier build output.
_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".qdrant",
    "runs",
    "outputs",
    "demo_data",
)
USECASES = {
    "audio_fingerprinting",
    "document_retrieval",
    "mixed_media",
    "product_classification",
    "product_search",
    "text_retrieval",
    "topic_clustering",
    "video_clip_search",
}


def _pip(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--no-index", "--disable-pip-version-check"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both wheels, built from a clean copy of the checkout (setuptools builds in the tree)."""
    base = tmp_path_factory.mktemp("packaging")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=_IGNORE)
    dist = base / "dist"
    for project in (src, src / "devkit"):
        _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), ".", cwd=project)
    found = {p.name.split("-")[0]: p for p in dist.glob("*.whl")}
    assert set(found) == {"nova_embed_pipelines", "nova_embed_devkit"}, sorted(dist.iterdir())
    return found


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.message_from_bytes(zf.read(meta))
    return msg.get_all("Requires-Dist") or []


def test_library_wheel_holds_the_library_jobs_and_configs_only(wheels: dict[str, Path]) -> None:
    names = _names(wheels["nova_embed_pipelines"])
    tops = {n.split("/")[0] for n in names}
    assert tops == {"pipelines", "jobs", "nova_embed_pipelines-0.1.0.dist-info"}, tops
    for gone in ("pipelines/emulator/", "pipelines/testing/", "pipelines/demo.py", "jobs/demo.py"):
        assert not [n for n in names if n.startswith(gone)], gone
    assert "jobs/emulator.py" not in names
    assert not [n for n in names if "nova_devkit" in n or "/tests/" in n]
    # The jobs and their Hydra configs.
    for needed in (
        "jobs/backfill.py",
        "jobs/manifest.py",
        "pipelines/conf/__init__.py",
        "pipelines/conf/backfill.yaml",
        "pipelines/conf/manifest.yaml",
        "pipelines/conf/classify.yaml",
        "pipelines/conf/duplicates.yaml",
        "pipelines/conf/cluster.yaml",
        "pipelines/conf/mcp.yaml",
        "pipelines/conf/bedrock/aws.yaml",
        "pipelines/conf/bedrock/emulator.yaml",
        "pipelines/conf/qdrant/embedded.yaml",
        "pipelines/conf/qdrant/server.yaml",
        "pipelines/conf/ray/local.yaml",
        "pipelines/conf/ray/cluster.yaml",
    ):
        assert needed in names, needed
    usecases = {n.rsplit("/", 1)[1][: -len(".yaml")] for n in names if "/conf/usecase/" in n}
    assert usecases == USECASES
    # Every module of the source tree is in the wheel (nothing forgotten by the package list).
    source = {
        p.relative_to(ROOT).as_posix()
        for pkg in ("pipelines", "jobs")
        for p in (ROOT / pkg).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert source <= set(names), sorted(source - set(names))


def test_library_requires_no_moto_outside_its_test_extra(wheels: dict[str, Path]) -> None:
    requires = _requires(wheels["nova_embed_pipelines"])
    runtime = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("hydra-core") for r in runtime), runtime
    assert not [r for r in runtime if r.lower().startswith("moto")], runtime
    assert not [r for r in runtime if "devkit" in r], runtime


def test_devkit_wheel_holds_the_devkit_and_needs_moto(wheels: dict[str, Path]) -> None:
    names = _names(wheels["nova_embed_devkit"])
    assert {n.split("/")[0] for n in names} == {"nova_devkit", "nova_embed_devkit-0.1.0.dist-info"}
    for needed in (
        "nova_devkit/emulator/__main__.py",
        "nova_devkit/emulator/server.py",
        "nova_devkit/media/__init__.py",
        "nova_devkit/demo.py",
        "nova_devkit/conf/emulator.yaml",
        "nova_devkit/conf/demo.yaml",
    ):
        assert needed in names, needed
    runtime = [r for r in _requires(wheels["nova_embed_devkit"]) if "extra ==" not in r]
    assert any(r.startswith("moto") for r in runtime), runtime
    assert any(r.startswith("nova-embed-pipelines") for r in runtime), runtime


def _run_installed(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The target goes ahead of the venv's site-packages (and of the editable checkout, whose
    # finder comes after the path-based one); the venv still provides the dependencies.
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_installed_jobs_run_from_another_folder(wheels: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "site"
    for wheel in wheels.values():
        _pip("install", "--no-deps", "--target", str(target), str(wheel), cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    where = _run_installed(
        target,
        elsewhere,
        "-c",
        "import importlib.resources as r, jobs.backfill, nova_devkit, pipelines; "
        "print(pipelines.__file__); print(jobs.backfill.__file__); print(nova_devkit.__file__); "
        "print(r.files('pipelines.conf'))",
    )
    assert where.returncode == 0, where.stderr
    paths = where.stdout.split()
    assert len(paths) == 4, where.stdout
    for path in paths:
        assert Path(path).resolve().is_relative_to(target.resolve()), (path, target)
        assert not Path(path).resolve().is_relative_to(ROOT), path

    backfill = _run_installed(target, elsewhere, "-m", "jobs.backfill", "--help")
    assert backfill.returncode == 0, backfill.stderr
    assert "backfill is powered by Hydra" in backfill.stdout
    groups = next(line for line in backfill.stdout.splitlines() if line.startswith("usecase: "))
    assert set(groups[len("usecase: ") :].split(", ")) == USECASES
    assert "bedrock: aws, emulator" in backfill.stdout

    manifest = _run_installed(target, elsewhere, "-m", "jobs.manifest", "--help")
    assert manifest.returncode == 0, manifest.stderr
    assert "hash_max_bytes" in manifest.stdout

    emulator = _run_installed(target, elsewhere, "-m", "nova_devkit.emulator", "--help")
    assert emulator.returncode == 0, emulator.stderr
    assert "ThrottlingException" in emulator.stdout
    # Nothing was written where the jobs ran.
    assert list(elsewhere.iterdir()) == []
