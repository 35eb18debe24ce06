"""A decoder that crashes its process, allocates without bound or hangs fails its own asset only
(``decoder_crashed``, ``decode_out_of_memory``, ``decode_timeout``); the other assets of its
block are embedded in the same run (read back from the collection).

Run with the harness (``wire_harness.py``, its Ray and endpoints in ``conftest.py``) like the wire
fault cases, hence the ``test_wire_`` name: those modules run last in this folder, together."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from ray import cloudpickle

from nova_devkit.emulator.launch import Endpoints
from pipelines.modalities import current, register
from tests.faults import hostile_decoders
from tests.faults.wire_harness import (
    check_run,
    invoke_calls,
    run_job,
    write_manifest,
)

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module", autouse=True)
def hostile_modality() -> None:
    # Ray workers cannot import this package: ship the class by value with the stages.
    cloudpickle.register_pickle_by_value(sys.modules[hostile_decoders.__name__])
    if current().get("hostile") is None:
        register(hostile_decoders.Hostile())


@pytest.mark.parametrize(
    ("behaviour", "code"),
    [
        ("abort", "decoder_crashed"),
        ("hog", "decode_out_of_memory"),
        ("sleep", "decode_timeout"),
    ],
)
def test_a_hostile_decoder_fails_its_asset_alone(
    endpoint: Endpoints, tmp_path: Path, behaviour: str, code: str
) -> None:
    rows = []
    # One block (rows_per_block is resources.embed.max_in_flight, 64): good, bad, good.
    for i, content in enumerate(["good one", "good two", behaviour, "good three", "good four"]):
        path = tmp_path / f"asset-{i}.hostile"
        path.write_text(content)
        rows.append({"asset_id": f"a{i}", "uri": str(path), "modality": "hostile"})
    write_manifest(tmp_path, rows)
    result = run_job(
        tmp_path,
        endpoint,
        "usecase.modalities=[hostile]",
        "decode.timeout_s=3",
        "decode.memory_limit_mb=300",
    )
    held = check_run(result, tmp_path, len(rows), exit_code=0)
    assert set(held) == {"a0", "a1", "a3", "a4"}
    dead = pq.read_table(result.dead_letter_path).to_pylist()
    assert [(d["asset_id"], d["error_code"]) for d in dead] == [("a2", code)]
    # The block was not retried by Ray: one call per good asset (and the preflight).
    assert invoke_calls(endpoint) == 1 + 4
