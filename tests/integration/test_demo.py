"""The demo's promises: a near-duplicate finds its source, an excerpt finds its recording."""

from __future__ import annotations

from pathlib import Path

import pytest

from nova_devkit.demo import DemoConfig, run_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


def test_demo_queries_find_their_sources(tmp_path: Path) -> None:
    results = run_demo(
        DemoConfig(
            out_dir=str(tmp_path / "demo"),
            usecases=["product_search", "audio_fingerprinting", "document_retrieval"],
            # Its journal beside its collections, not in ./.state (shared by every worker).
            overrides=[f"state.path={tmp_path / 'state'}"],
        )
    )
    for usecase in ("product_search", "audio_fingerprinting", "document_retrieval"):
        assert results[usecase]["queries"], usecase
        assert all(q["top_hit_ok"] for q in results[usecase]["queries"]), results[usecase]
        assert Path(results[usecase]["report"]).exists()
