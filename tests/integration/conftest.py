"""Integration fixtures: the slow assets' uninterrupted backfill that the kill-and-resume tests
compare with. (The session's Ray, ``ray_session``, is in ``tests/conftest.py``.)"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nova_devkit.emulator.launch import Endpoints


@dataclass(frozen=True)
class SlowCollection:
    """What an uninterrupted backfill of the slow assets left (see ``uninterrupted``)."""

    # Its qdrant/ (collection ``slow``), state/ (journal) and runs/; test_migrate_resume.py
    # migrates that collection in place (the only test that writes here).
    root: Path
    manifest: Path
    points: dict[str, tuple[list[float], dict[str, Any]]]  # point id -> (vector, payload)


@pytest.fixture(scope="session")
def uninterrupted(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> SlowCollection:
    """The slow assets of ``test_kill_resume.py`` backfilled by one uninterrupted job process:
    the collection every killed and resumed run must end equal to (``points``, read here), and
    the one ``test_migrate_resume.py`` migrates, in place. Run once for both modules, and without
    the pace that lets the other runs be killed mid-way (nothing here is killed)."""
    from tests.integration.test_kill_resume import (
        ASSETS,
        CHUNKS,
        _args,
        _manifest,
        _points,
        _unpaced_env,
    )

    root = tmp_path_factory.mktemp("uninterrupted")
    manifest = _manifest(root)
    endpoints.emulator.reset()
    subprocess.run(
        _args(manifest, root, endpoints, paced=False),
        env=_unpaced_env(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    points = _points(root)
    assert len(points) == ASSETS * CHUNKS
    return SlowCollection(root, manifest, points)
