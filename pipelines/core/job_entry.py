"""What every ``python -m jobs.<name>`` does around its work: one way to read its config and one
table of exit codes (``docs/scheduled-backfills.md``).

- :func:`job_config`: the Hydra config as the job's typed dataclass (botocore's INFO lines about
  every credential lookup silenced);
- :func:`exit_codes`: runs the job's body with the job's garbage-collection policy
  (:func:`job_gc`); a configuration or manifest refused before any work exits 2, an
  infrastructure failure 3, each with one line on stderr (no traceback).
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pipelines.core.errors import ConfigError, InfrastructureError, ManifestError

C = TypeVar("C")
T = TypeVar("T")

EXIT_CONFIG = 2
EXIT_INFRASTRUCTURE = 3


def job_config(dcfg: Any, kind: type[C]) -> C:
    """The composed Hydra config (a ``DictConfig``) as ``kind``."""
    from omegaconf import OmegaConf

    logging.getLogger("botocore").setLevel(logging.WARNING)
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, kind), type(cfg)
    return cfg


# Young-generation threshold while a job runs (CPython's default is 700 allocations).
JOB_GC_YOUNG = 50_000


@contextmanager
def job_gc() -> Iterator[None]:
    """A job's process collects garbage rarely while the job runs.

    The driver keeps tens of thousands of small objects alive between flushes (the ledger's
    buffered deltas, Ray Data's bookkeeping) on top of everything imported, and CPython's
    default thresholds (a young collection every 700 allocations, which promotes them until a
    full collection walks the whole heap) made garbage collection ~40 % of the ledger's
    accounting (``RunLedger.account`` + ``flush`` on 98,304 acknowledgements: ~14 us a row
    against ~8.5 with collection off). What is alive when the job starts (modules, the
    config) is frozen out of every collection, and a young collection waits for
    ``JOB_GC_YOUNG`` allocations; cycles are still collected, fewer times. Both are undone on
    exit (a process that runs several jobs, a test session, gets its settings back).
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(JOB_GC_YOUNG, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def exit_codes(body: Callable[[], T]) -> T:
    """``body()`` (under :func:`job_gc`), or the process's exit with the documented code and
    one line."""
    try:
        with job_gc():
            return body()
    except (ConfigError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except InfrastructureError as exc:
        print(f"infrastructure error: {exc}", file=sys.stderr)
        sys.exit(EXIT_INFRASTRUCTURE)
