"""The harness cases' endpoints and Ray (``tests/faults/test_wire_*.py``), started once for all of
them: the fault suite's own credentials (:data:`tests.faults.wire_harness.SECRETS`) in the
environment before that Ray starts, so that its workers hold them and every case can check that
none leaks into what the run leaves.

The fixtures are package-scoped: they end with the last module of this folder. The harness modules
are named ``test_wire_*`` so that they are that last stretch; a module sorted after them would run
in their environment. The session's Ray (``ray_session``, ``tests/conftest.py``), when an earlier
module started it, is stopped meanwhile (its workers must not hold the suite's credentials, nor
may the harness's Ray be the session's) and started again after them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from nova_devkit.emulator.config import EmulatorConfig
from nova_devkit.emulator.launch import Endpoints, local_endpoints
from tests.faults.wire_harness import SECRETS
from tests.local_ray import start_local_ray
from tests.quota_guards import forget_quota_guards


@pytest.fixture(scope="package")
def session_ray_paused() -> Iterator[None]:
    """The session's Ray, if running, stops until the harness cases are done (and their
    credentials out of the environment), then starts again."""
    import ray

    was_running = ray.is_initialized()
    if was_running:
        ray.shutdown()
    try:
        yield
    finally:
        if was_running:
            start_local_ray()


@pytest.fixture(scope="package")
def secret_env(session_ray_paused: None) -> Iterator[dict[str, str]]:
    """The suite's own credentials in the environment (before Ray starts: workers inherit)."""
    saved = {k: os.environ.get(k) for k in SECRETS}
    os.environ.update(SECRETS)
    try:
        yield SECRETS
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="package")
def wire(secret_env: dict[str, str]) -> Iterator[Endpoints]:
    """The local Bedrock endpoint and S3 of the harness cases."""
    with local_endpoints(EmulatorConfig()) as eps:
        yield eps


@pytest.fixture(scope="package")
def wire_ray(secret_env: dict[str, str]) -> Iterator[None]:
    """The harness cases' local Ray, its workers started with the suite's credentials."""
    import ray

    start_local_ray()
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def endpoint(wire: Endpoints, wire_ray: None) -> Endpoints:
    """The harness endpoints, reset for one case; the quota guard forgets the pace an earlier
    case's throttling storm taught it (each case runs as it would alone)."""
    wire.emulator.reset()
    forget_quota_guards()
    return wire
