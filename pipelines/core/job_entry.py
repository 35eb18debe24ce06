"""What every ``python -m jobs.<name>`` does around its work: one way to read its config and one
table of exit codes (``docs/scheduled-backfills.md``).

- :func:`job_config`: the Hydra config as the job's typed dataclass (botocore's INFO lines about
  every credential lookup silenced);
- :func:`exit_codes`: runs the job's body; a configuration or manifest refused before any work
  exits 2, an infrastructure failure 3, each with one line on stderr (no traceback).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
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


def exit_codes(body: Callable[[], T]) -> T:
    """``body()``, or the process's exit with the documented code and one line."""
    try:
        return body()
    except (ConfigError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except InfrastructureError as exc:
        print(f"infrastructure error: {exc}", file=sys.stderr)
        sys.exit(EXIT_INFRASTRUCTURE)
