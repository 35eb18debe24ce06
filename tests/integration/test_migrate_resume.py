"""``kill -9`` of a migration's driver in the middle of building the next collection, then the
same command again: the second run resumes the same collection (``slow_v2``), pays only for what
the journal does not hold, validates and switches the alias.

The collection migrated is the one the uninterrupted backfill of ``tests/integration/conftest.py``
left (a job process over the slow-decoding modality of ``test_kill_resume.py``), in its folder;
both migrations run as real processes (their own Ray) that register that modality themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from nova_devkit.emulator.launch import Endpoints
from tests.integration.conftest import SlowCollection
from tests.integration.test_kill_resume import (
    ASSETS,
    CHUNKS,
    HERE,
    _calls,
    _kill_all,
    _quiet,
    _unpaced_env,
)

# One xdist worker runs both modules (`--dist loadgroup`): the session fixture `uninterrupted`
# (tests/integration/conftest.py), a whole backfill, is then made once, not once per worker.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("uninterrupted")]

JOB = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
from ray import cloudpickle
import slow_modality
cloudpickle.register_pickle_by_value(slow_modality)
from pipelines.modalities import register
register(slow_modality.SlowText())
from pipelines.config.compose import compose_migrate
from pipelines.migrate import run_migration
sys.exit(run_migration(compose_migrate(sys.argv[1:])).exit_code)
"""
QUERIES = 3


def _args(
    manifest: Path, root: Path, emulator: Endpoints, *more: str, paced: bool = True
) -> list[str]:
    # The arguments of test_kill_resume._args (the backfill's), then the migration's.
    return [
        sys.executable,
        "-c",
        JOB,
        "usecase.name=slow",
        "usecase.modalities=[slow_text]",
        f"manifest={manifest}",
        *emulator.pipeline_overrides(),
        "qdrant.collection=slow",
        *(["bedrock.quota.requests_per_minute=240"] if paced else []),
        "resources.embed.max_in_flight=4",
        f"qdrant.path={root / 'qdrant'}",
        f"run_dir={root / 'runs'}",
        f"state.path={root / 'state'}",
        *more,
    ]


def test_a_killed_migration_resumes_and_switches(
    uninterrupted: SlowCollection, emulator: Endpoints
) -> None:
    from qdrant_client import QdrantClient

    # What the backfill left (collection slow_v1 behind the alias ``slow``, and its journal): the
    # uninterrupted run's folder, migrated in place. (The journal names a collection by its
    # store's path: in a copy of the folder the old collection would have no journal entries.)
    root, manifest = uninterrupted.root, uninterrupted.manifest
    more = ("embedding.dimension=3072", f"validation.sample_queries={QUERIES}")
    migrate = _args(manifest, root, emulator, *more)
    total = ASSETS * CHUNKS
    start = _calls(emulator)
    proc = subprocess.Popen(
        migrate, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    tree: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while _calls(emulator) - start < 0.4 * total and time.monotonic() < deadline:
            assert proc.poll() is None, "the migration ended before it could be killed"
            tree = psutil.Process(proc.pid).children(recursive=True)
            time.sleep(0.02)
    finally:
        _kill_all(proc, tree)
    _quiet(emulator)
    killed_at = _calls(emulator) - start
    assert 0.4 * total <= killed_at < total

    # The same migration again; nothing kills it, so without the pace (neither the quota nor the
    # decoder's pace is in a vector, payload or fingerprint: see slow_modality.py).
    again = subprocess.run(
        _args(manifest, root, emulator, *more, paced=False),
        env=_unpaced_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    paid_again = _calls(emulator) - start - killed_at
    reports = sorted((root / "runs" / "slow").glob("migrate-*/migration.json"))
    report = json.loads(reports[-1].read_text())
    assert report["outcome"] == "switched" and report["resumed"] and report["to"] == "slow_v2"
    # The resumed run paid for the unfinished assets (and a preflight), and the queries: not
    # for the ones the killed run finished.
    assert paid_again < total + 1 + 2 * QUERIES, (killed_at, paid_again)
    assert report["build"]["skipped_unchanged"] > 0

    client = QdrantClient(path=str(root / "qdrant"))
    try:
        aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
        assert aliases == {"slow": "slow_v2"}
        records, _ = client.scroll("slow_v2", limit=10_000, with_vectors=True)
        assert len(records) == total and {len(r.vector) for r in records} == {3072}
        assert {c.name for c in client.get_collections().collections} == {"slow_v1", "slow_v2"}
    finally:
        client.close()
