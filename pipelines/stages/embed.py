"""The embed stage: segment rows in, embedded rows out, within one cluster-wide rate budget.

Each actor holds one boto3 client (thread-safe) and runs up to ``resources.embed.max_in_flight``
requests at once in threads. Before every attempt it reserves a slot from the shared
:mod:`pipelines.core.rate_limit` budget actor and sleeps the delay it is given; it reports
successes and throttles back so that the budget adapts. Retries are ours, not botocore's (the
client is built with one attempt), so that every attempt is paced and counted in one place: the
project's retry helper (:func:`pipelines.core.retry.retry_call`) with hooks before each attempt
(pace it) and on each failure (count it).

Outcomes per segment:
- success: one row per returned embedding (two for ``AUDIO_VIDEO_SEPARATE``);
- throttled (``ThrottlingException``, ``ServiceQuotaExceededException``): wait and try again,
  paced by the budget, until the run's deadline (``limits.run_deadline_s``); never dead-lettered
  because a number of attempts ran out;
- permanent error, or retries exhausted (transient errors, malformed answers: a few tries, see
  :data:`pipelines.bedrock.errors.RETRY_BOUNDS`), or still throttled at the deadline: a
  dead-letter row (stage ``embed``, the error's snake_case code, :mod:`pipelines.core.codes`);
- fatal error (credentials, access): :class:`~pipelines.core.errors.InfrastructureError`, the job
  stops, since every other request would fail the same way.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipelines.config.schema import BedrockConfig, EmbeddingConfig, PricesConfig
from pipelines.core.errors import RecordError, SpendingLimitReached
from pipelines.core.retry import Failure, retry_call
from pipelines.core.rows import EMBEDDED, SEGMENT, SEGMENT_COLUMNS, dead_letter_row, is_dead_letter
from pipelines.core.stage import Resources, Stage
from pipelines.modalities import Registry, current

log = logging.getLogger(__name__)


def guard_for(bedrock: BedrockConfig, name: str) -> Any:
    """The handle on the shared quota guard ``name`` with the configured quotas."""
    from pipelines.core.rate_limit import AsyncQuotaSettings, GuardHandle, RateBudgetSettings

    quota = bedrock.quota
    return GuardHandle(
        name,
        RateBudgetSettings(quota.requests_per_minute, quota.tokens_per_minute),
        AsyncQuotaSettings(quota.async_requests_per_minute, quota.async_max_concurrent_jobs),
        timeout_s=quota.guard_timeout_s,
    )


class EmbedStage(Stage):
    """Segment rows in, embedded rows out: a pool of I/O actors paced by one shared rate budget.

    ``budget_name`` names the cluster-wide quota guard (:mod:`pipelines.core.rate_limit`: one
    per account, region and model); the stage creates or joins it in the driver
    (:meth:`on_start`) with the configured quota, and reports its final state
    (:meth:`on_finish`). Without a name the stage does not pace (tests). ``run_id`` names the
    run's spending account in the guard, with ``max_calls`` / ``max_usd`` (None: no limit); the
    cost of each call is its modality's cost rule at ``prices``.
    """

    name = "embed"
    takes = SEGMENT
    gives = EMBEDDED

    def __init__(
        self,
        bedrock: BedrockConfig,
        embedding: EmbeddingConfig,
        *,
        budget_name: str | None = None,
        resources: Resources | None = None,
        max_in_flight: int = 32,
        modalities: Registry | None = None,
        run_id: str | None = None,
        max_calls: int | None = None,
        max_usd: float | None = None,
        prices: PricesConfig | None = None,
        run_deadline: float | None = None,
    ) -> None:
        # How each modality's segments become requests travels with the stage to its actors.
        self.modalities = modalities or current()
        self.run_id = run_id
        self.max_calls, self.max_usd = max_calls, max_usd
        self.prices = prices or PricesConfig()
        self.guard = guard_for(bedrock, budget_name) if budget_name is not None else None
        self.bedrock = bedrock
        self.embedding = embedding
        self.budget_name = budget_name
        self.max_in_flight = max_in_flight
        # Wall-clock time (time.time()) until which throttled calls wait; None: throttles count
        # against bedrock.max_attempts like other transient errors.
        self.run_deadline = run_deadline
        # One batch per call holds as many segments as the actor has threads.
        self.resources = resources or Resources(
            num_cpus=0.25, concurrency=2, actor=True, calls_per_actor=2, batch_size=max_in_flight
        )
        self.budget: Any = None
        self.client: Any = None
        self.pool: ThreadPoolExecutor | None = None
        self._rng = random.Random()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(budget=None, client=None, pool=None)
        return state

    def on_start(self) -> None:
        if self.guard is not None:
            self.budget = self.guard.attach()
            if self.run_id is not None:
                self.guard.ask("open_run", self.run_id, self.max_calls, self.max_usd)

    def setup(self) -> None:
        from pipelines.bedrock.client import NovaEmbeddingsClient, make_bedrock_client

        boto = make_bedrock_client(self.bedrock, max_pool_connections=self.max_in_flight + 2)
        self.client = NovaEmbeddingsClient(boto, self.embedding.model_id)
        if self.guard is not None:
            self.budget = self.guard
        self.pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="embed")

    def teardown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False)

    def live(self) -> dict[str, Any]:
        """Calls and throttles so far, as the shared budget counted them (before any result has
        reached the driver)."""
        import ray

        # Not before the run has started Ray: the console's thread asks from the start, and a
        # call would start a Ray of its own there, racing the runner's.
        if self.guard is None or self.run_id is None or not ray.is_initialized():
            return {}
        try:
            actor = self.guard._actor()
            acct = ray.get(actor.run_account.remote(self.run_id), timeout=2)
        except Exception:  # the console must never fail the run
            return {}
        if not acct:
            return {}
        return {"bedrock_calls": int(acct["calls"]), "throttles": int(acct["throttles"])}

    def on_finish(self) -> dict[str, Any]:
        if self.guard is None:
            return {}
        try:
            snap = self.guard.ask("snapshot")
            spent = self.guard.ask("close_run", self.run_id) if self.run_id else None
        except Exception as exc:  # the figures are for the report; the run's work is done
            log.warning("rate budget state unavailable: %s", exc)
            return {"rate_budget": None}
        return {"rate_budget": {**snap, "guard": self.guard.name, "run_account": spent}}

    # -- rate budget ----------------------------------------------------------------------------
    def _reserve_batch(self, calls: list[_Call]) -> None:
        """Reserve the first attempt of every call in a batch with one round trip to the guard.

        Each call gets the time its first attempt may go (the guard spaces them as it spaces
        single reservations) or :data:`~pipelines.core.rate_limit.STOP`; retries reserve one by
        one (:meth:`_reserve`). One request to the guard per batch instead of one per call:
        measured by ``benchmarks/bench_pipeline.py`` (the quota actor's and the embed actors'
        CPU per request)."""
        if self.guard is None or not calls:
            return
        from pipelines.core.rate_limit import STOP

        delays = self.guard.ask("reserve_many", [(c.tokens, c.usd) for c in calls], self.run_id)
        now = time.monotonic()
        for call, delay in zip(calls, delays, strict=True):
            call.start = STOP if delay == STOP else now + delay

    def _reserve(self, tokens: int, usd: float = 0.0) -> None:
        if self.guard is None:
            return
        from pipelines.core.rate_limit import STOP

        # Ray restarts the guard when it dies (with what it learned and counted); a guard that
        # cannot be reached stops the run (GuardHandle: InfrastructureError, exit 3).
        delay = self.guard.ask("reserve", tokens, self.run_id, usd)
        self._wait_until(STOP if delay == STOP else time.monotonic() + delay)

    def _wait_until(self, start: float) -> None:
        from pipelines.core.rate_limit import STOP

        if start == STOP:
            assert self.guard is not None
            reason = self.guard.ask("stop_reason", self.run_id) or "a spending limit was reached"
            raise SpendingLimitReached(reason)
        delay = start - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _report(self, throttles: int = 0, usd: float = 0.0) -> None:
        """A failed attempt, at once: throttles slow the shared budget down."""
        if self.guard is not None:
            # Fire and forget: the budget's bookkeeping must not add latency to the call path.
            self.guard.tell("report", 0, throttles, 0, 0, self.run_id, usd)

    def _report_successes(self, successes: list[tuple[int, int, float]]) -> None:
        """A batch's successes in one message: (estimated tokens, reported tokens, cost
        correction) per call."""
        if self.guard is None or not successes:
            return
        estimated = sum(e for e, _, _ in successes)
        actual = sum(a for _, a, _ in successes)
        usd = sum(u for _, _, u in successes)
        self.guard.tell("report", len(successes), 0, estimated, actual, self.run_id, usd)

    # -- one segment ----------------------------------------------------------------------------
    def prepare(self, row: dict[str, Any]) -> _Call | list[dict[str, Any]]:
        """A segment row as a call ready to send, or the rows it ends as without one (a dead
        letter passed through, a request that cannot be built)."""
        from pipelines.bedrock.errors import RequestValidationError
        from pipelines.bedrock.from_rows import request_from_segment

        base = {c: row.get(c) for c in SEGMENT_COLUMNS}
        if is_dead_letter(row):
            return [base]
        modality = self.modalities.get(str(row.get("modality")))
        tokens = modality.estimate_tokens(row) if modality is not None else 1
        # What the call will cost by the modality's cost rule (text: estimated tokens until the
        # service reports them); charged to the run before the call, refunded if it fails.
        usage = modality.usage(row) if modality is not None else None
        usd = modality.cost(usage, self.prices) if modality is not None and usage else 0.0
        try:
            request = request_from_segment(row, self.embedding, modalities=self.modalities)
        except RequestValidationError as exc:
            return [segment_failure(base, exc)]
        return _Call(base, modality, tokens, usage, usd, request)

    def send(self, call: _Call) -> tuple[list[dict[str, Any]], tuple[int, int, float] | None]:
        """Send one prepared call, retried as the bedrock settings say; returns its embedded
        rows (or one dead-letter row) and, on success, what to report to the budget."""
        from pipelines.bedrock.errors import (
            BedrockCallError,
            BedrockRetryRule,
            is_throttle,
            raise_if_fatal,
            retry_policy,
        )

        base, modality, usage, usd = call.base, call.modality, call.usage, call.usd
        calls = throttles = 0
        exhausted = False

        def before_attempt(attempt: int) -> None:
            nonlocal calls
            if attempt == 1 and call.start is not None:
                self._wait_until(call.start)  # reserved with its batch
            else:
                self._reserve(call.tokens, usd)
            calls += 1

        def on_failure(failure: Failure) -> None:
            nonlocal throttles, exhausted
            throttled = is_throttle(failure.error)
            throttles += int(throttled)
            self._report(int(throttled), usd=-usd)
            exhausted = failure.exhausted

        try:
            waits = self.run_deadline is not None
            result = retry_call(
                lambda: self.client.embed(call.request),
                BedrockRetryRule(self.bedrock.max_attempts - 1, wait_throttled=waits),
                retry_policy(self.bedrock, self.run_deadline),
                before_attempt=before_attempt,
                on_failure=on_failure,
                rng=self._rng,
            )
        except BedrockCallError as exc:
            raise_if_fatal(exc)
            message = None
            if exhausted and is_throttle(exc):
                message = (
                    f"still throttled at the run deadline (limits.run_deadline_s) after {calls} "
                    f"attempts: {exc.message}"
                )
            elif exhausted or calls > 1:
                message = f"gave up after {calls} attempts: {exc.message}"
            error = exc.record_error("embed", message)
            return [segment_failure(base, error, calls, throttles)], None
        correction = 0.0
        if modality is not None and usage is not None and result.input_tokens:
            usage.input_tokens = int(result.input_tokens)
            correction = modality.cost(usage, self.prices) - usd
        success = (call.tokens if result.input_tokens else 0, result.input_tokens or 0, correction)
        out = []
        for i, emb in enumerate(result.embeddings):
            out.append(
                {
                    **base,
                    "embedding_type": emb.embedding_type,
                    "vector": emb.vector,
                    "input_tokens": result.input_tokens if i == 0 else 0,
                    "truncated_char_length": emb.truncated_char_length,
                    # Calls are counted once per segment, on its first embedding row.
                    "bedrock_calls": calls if i == 0 else 0,
                    "throttles": throttles if i == 0 else 0,
                    "retries": calls - 1 if i == 0 else 0,
                }
            )
        return out, success

    def process(self, batch: pa.Table) -> pa.Table:
        if self.pool is None:
            self.setup()
        assert self.pool is not None
        prepared = [self.prepare(r) for r in batch.to_pylist()]
        calls = [p for p in prepared if isinstance(p, _Call)]
        self._reserve_batch(calls)
        futures = {id(c): self.pool.submit(self.send, c) for c in calls}
        out: list[dict[str, Any]] = []
        successes = []
        try:
            for p in prepared:
                if isinstance(p, _Call):
                    rows, success = futures[id(p)].result()
                    out.extend(rows)
                    if success is not None:
                        successes.append(success)
                else:
                    out.extend(p)
        finally:
            self._report_successes(successes)
        # Media bytes are not needed downstream: drop them so the writer moves vectors only.
        for r in out:
            r["input_bytes"] = None
        return EMBEDDED.table(out)


@dataclass
class _Call:
    """One segment ready to send: its row's identity, modality, estimated tokens and cost, the
    request, and when its first attempt may go (set when the batch is reserved)."""

    base: dict[str, Any]
    modality: Any
    tokens: int
    usage: Any
    usd: float
    request: Any
    start: float | None = None


def segment_failure(
    base: dict[str, Any], error: RecordError, calls: int = 0, throttles: int = 0
) -> dict[str, Any]:
    """An embed stage's one way to fail a segment: its dead-letter row (placed at the segment),
    with the calls it cost."""
    error.at(
        **{
            c: base.get(c)
            for c in (
                "segment_index",
                "segment_count",
                "page",
                "start_s",
                "end_s",
                "char_start",
                "char_end",
                "input_kind",
            )
        }
    )
    row = dead_letter_row(base, error)
    row.update(bedrock_calls=calls, throttles=throttles, retries=max(calls - 1, 0))
    return row
