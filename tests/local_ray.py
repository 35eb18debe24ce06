"""The local Ray the tests run in-process jobs on: 2 CPUs, like the dev machines.

Started by the session's ``ray_session`` fixture (``tests/conftest.py``) and by the fault harness
(``tests/faults/conftest.py``), which needs one whose workers start with its own credentials.
"""

from __future__ import annotations

import os


def start_local_ray() -> None:
    """Connect this process to a new local Ray (a no-op when it is connected already).

    ``address="local"``, as the jobs' own ``init_ray`` does: without it ``ray.init`` joins the
    cluster in ``RAY_ADDRESS`` or the last one ``ray start`` left on this shared machine, and
    the tests would run on (and die with) someone else's Ray.
    """
    import ray

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        ignore_reinit_error=True,
        configure_logging=False,
    )
