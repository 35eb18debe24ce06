"""The local Ray the tests run in-process jobs on: 2 CPUs, like the dev machines.

Started by the session's ``ray_session`` fixture (``tests/conftest.py``) and by the fault harness
(``tests/faults/conftest.py``), which needs one whose workers start with its own credentials.
"""

from __future__ import annotations

import os


def start_local_ray() -> None:
    """Connect this process to a new local Ray (a no-op when it is connected already)."""
    import ray

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        ignore_reinit_error=True,
        configure_logging=False,
    )
