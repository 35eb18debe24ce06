"""What every job's entry does around its body: the exit codes and the garbage-collection policy."""

from __future__ import annotations

import gc

import pytest

from pipelines.core.errors import ConfigError, InfrastructureError
from pipelines.core.job_entry import (
    EXIT_CONFIG,
    EXIT_INFRASTRUCTURE,
    JOB_GC_YOUNG,
    exit_codes,
)


def test_a_job_runs_with_rare_collections_and_the_process_gets_its_settings_back() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    seen: dict[str, object] = {}

    def body() -> str:
        seen["threshold"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()
        return "done"

    assert exit_codes(body) == "done"
    assert seen["threshold"] == (JOB_GC_YOUNG, *before[1:])
    # What was alive when the job started is out of every collection while it runs.
    assert isinstance(seen["frozen"], int) and seen["frozen"] > frozen_before
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("usecase.x", "bad key"), EXIT_CONFIG),
        (InfrastructureError("store down"), EXIT_INFRASTRUCTURE),
    ],
)
def test_a_failed_job_exits_with_its_code_and_restores_the_collector(
    error: Exception, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    before, frozen_before = gc.get_threshold(), gc.get_freeze_count()

    def body() -> None:
        raise error

    with pytest.raises(SystemExit) as exited:
        exit_codes(body)
    assert exited.value.code == code
    assert str(error) in capsys.readouterr().err
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before
