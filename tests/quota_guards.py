"""Test isolation for the quota guards of the test process's Ray.

A quota guard is a detached Ray actor per account (here: the local endpoint's address), region and
model; it keeps the rate it learned from throttles for as long as it is attached with the same
quota (``pipelines.core.rate_limit.QuotaGuard.attach``). Tests that share one endpoint and one Ray
therefore inherit the pace an earlier test's throttling storm left: a later test of a few dozen
calls then waits at a fraction of the quota (measured: 22 s instead of 6 s for the 5xx storm of
``tests/faults/test_wire_bedrock.py``). No test asserts on a pace it did not set up itself.

:func:`forget_quota_guards` attaches every guard of this Ray to a quota no job configures, so the
next job's attach differs from it and the guard starts afresh, as in a test run alone. Its job
slots and run accounts are kept (only the learned rates go), and nothing is killed.
"""

from __future__ import annotations

import sys


def forget_quota_guards() -> None:
    """Let every quota guard of the connected Ray (none: nothing to do) start afresh."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    from pipelines.core.rate_limit import BUDGET_NAMESPACE, AsyncQuotaSettings, RateBudgetSettings

    # A quota of one call a minute: no job is configured with it.
    sentinel = RateBudgetSettings(requests_per_minute=1.0, tokens_per_minute=1.0)
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") != BUDGET_NAMESPACE:
            continue
        try:
            guard = ray.get_actor(entry["name"], namespace=BUDGET_NAMESPACE)
            ray.get(guard.attach.remote(sentinel, AsyncQuotaSettings()), timeout=10)
        except Exception:  # not a guard (a test's stand-in), or gone: nothing to forget
            continue
