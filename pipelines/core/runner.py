"""The runner: a source and a list of stages become a Ray Data graph, driven to the end.

:class:`Pipeline` is data (a source, a list of :class:`~pipelines.core.stage.Stage`), checked
when it is made: consecutive row types must chain, and driver stages come last.
:func:`run_pipeline` starts (or joins) Ray, calls every stage's ``on_start``, appends one
``map_batches`` per Ray stage (tasks or an actor pool, as its
:class:`~pipelines.core.stage.Resources` say), iterates the result in the driver, passes each
batch through the driver stages and hands it to the caller's ``on_batch`` (the job's
accounting; a job's console reads what it shows on its own thread). Finally every stage's
``on_finish`` figures are returned, keyed by stage name.

Sources: :class:`BlocksSource` hands Ray its blocks at once (a table in memory); a streaming
source (``windowed=True``: a run's planned assets in a Parquet file, :class:`ParquetSource`; a
scan of a store, :class:`StoreScanSource`) is run window by window, so that the driver never
holds more than one window.
"""

from __future__ import annotations

import abc
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipelines.core.rows import MissingColumnsError, RowType
from pipelines.core.stage import Stage

if TYPE_CHECKING:
    from pipelines.config.schema import RayConfig
    from pipelines.stores.base import VectorStore

log = logging.getLogger(__name__)


class Source(abc.ABC):
    """Where a pipeline's rows come from."""

    gives: RowType
    # True: blocks() is a long stream, run window by window; False: all blocks go to Ray at once.
    windowed: bool = False
    window_blocks: int = 64

    @abc.abstractmethod
    def blocks(self, cpus: int) -> Iterable[pa.Table]:
        """The source's rows as Arrow blocks (one Ray task per block for task stages)."""

    def windows(self, cpus: int) -> Iterator[list[pa.Table]]:
        """The blocks, grouped into the windows the runner runs one after the other (one window
        of all blocks unless ``windowed``)."""
        blocks = self.blocks(cpus)
        if not self.windowed:
            listed = list(blocks)
            if listed:
                yield listed
            return
        window: list[pa.Table] = []
        for block in blocks:
            if block.num_rows:
                window.append(block)
            if len(window) >= self.window_blocks:
                yield window
                window = []
        if window:
            yield window


class BlocksSource(Source):
    """Blocks known up front (``cut`` may split a table into blocks once the CPUs are known)."""

    def __init__(
        self,
        gives: RowType,
        table: pa.Table,
        cut: Callable[[pa.Table, int], list[pa.Table]] | None = None,
    ) -> None:
        self.gives = gives
        self.table = table
        self.cut = cut

    def blocks(self, cpus: int) -> list[pa.Table]:
        if self.table.num_rows == 0:
            return []
        return self.cut(self.table, cpus) if self.cut else [self.table]


class ParquetSource(Source):
    """Rows of a Parquet file too large for the driver (a run's planned assets), read window by
    window: up to ``window_rows`` rows or ``window_bytes`` of Arrow data at a time (whichever
    comes first), each window cut into blocks by ``cut``. The driver holds one window; a window's
    blocks all go to Ray at once, as a :class:`BlocksSource`'s do.

    Each window is one Ray Data execution, which drains before the next starts (its last tasks
    leave cores idle): measured with ``benchmarks/bench_scale.py`` (1,000,000 inline texts),
    windows of 50,000 rows took 89 s and windows of 200,000 rows 73 s, the driver's peak going
    from 933 to 1,181 MiB. The byte cap keeps a window of long inline texts as small in memory as
    one of short ones, and ``window_blocks`` a window of assets of unknown size (``s3://``, one
    block each) from becoming hundreds of thousands of blocks in one execution.
    """

    windowed = True

    def __init__(
        self,
        gives: RowType,
        path: str | os.PathLike[str],
        cut: Callable[[pa.Table, int], list[pa.Table]] | None = None,
        window_rows: int = 200_000,
        window_bytes: int = 64 * 1024 * 1024,
        read_rows: int = 4096,
        window_blocks: int = 50_000,
    ) -> None:
        self.gives = gives
        self.path = os.fspath(path)
        self.cut = cut
        self.window_rows = window_rows
        self.window_bytes = window_bytes
        # Rows read at a time: the byte cap is checked between reads.
        self.read_rows = read_rows
        self.window_blocks = window_blocks

    def blocks(self, cpus: int) -> Iterator[pa.Table]:
        for window in self.windows(cpus):
            yield from window

    def windows(self, cpus: int) -> Iterator[list[pa.Table]]:
        import pyarrow.parquet as pq

        if not os.path.exists(self.path):
            return
        step = max(1, min(self.window_rows, self.read_rows))
        pending: list[pa.RecordBatch] = []
        rows = size = 0
        with pq.ParquetFile(self.path) as file:
            for batch in file.iter_batches(batch_size=step):
                pending.append(batch)
                rows += batch.num_rows
                size += batch.nbytes
                if rows >= self.window_rows or size >= self.window_bytes:
                    yield from self._window(pending, cpus)
                    pending, rows, size = [], 0, 0
        yield from self._window(pending, cpus)

    def _window(self, batches: list[pa.RecordBatch], cpus: int) -> Iterator[list[pa.Table]]:
        if not batches:
            return
        table = pa.Table.from_batches(batches).cast(self.gives.schema).combine_chunks()
        if not table.num_rows:
            return
        blocks = self.cut(table, cpus) if self.cut else [table]
        step = max(1, self.window_blocks)
        for start in range(0, len(blocks), step):
            yield blocks[start : start + step]


class StoreScanSource(Source):
    """Every point of a store's collection (``STORED_POINT`` rows), streamed window by window.

    The scan runs in the driver (an embedded store can only be read by the process that holds
    its folder), ``batch_size`` points a block.
    """

    windowed = True

    def __init__(self, store: VectorStore, batch_size: int = 256, window_blocks: int = 16) -> None:
        from pipelines.core.rows import STORED_POINT

        self.gives = STORED_POINT
        self.store = store
        self.batch_size = batch_size
        self.window_blocks = window_blocks

    def blocks(self, cpus: int) -> Iterator[pa.Table]:
        return self.store.scan(batch_size=self.batch_size)


@dataclass
class Pipeline:
    """A named source and stages, in order. Checked on construction."""

    name: str
    source: Source
    stages: list[Stage] = field(default_factory=list)

    def __post_init__(self) -> None:
        have = set(self.source.gives.names)
        seen_driver = False
        for stage in self.stages:
            missing = [c for c in stage.takes.names if c not in have]
            if missing:
                raise MissingColumnsError(
                    f"pipeline {self.name!r}: stage {stage.name!r} takes {stage.takes.name} but "
                    f"the stage before it gives no {missing}"
                )
            if seen_driver and not stage.resources.on_driver:
                raise ValueError(
                    f"pipeline {self.name!r}: stage {stage.name!r} runs on Ray after a driver stage"
                )
            seen_driver = seen_driver or stage.resources.on_driver
            have = set(stage.gives.names)

    @property
    def gives(self) -> RowType:
        return self.stages[-1].gives if self.stages else self.source.gives

    def describe(self) -> str:
        """One line: ``source -> stage [resources] -> ...`` (logs, docs)."""
        parts = [type(self.source).__name__]
        for s in self.stages:
            r = s.resources
            where = (
                "driver"
                if r.on_driver
                else (f"{r.concurrency or 1} actors" if r.actor else "tasks")
            )
            parts.append(f"{s.name} [{where}, {r.num_cpus:g} CPU]")
        return " -> ".join(parts)


# ---- running one stage ---------------------------------------------------------------------------


def _outputs(stage: Stage, batch: pa.Table) -> Iterator[pa.Table]:
    missing = stage.takes.missing(batch.column_names)
    if missing:
        raise MissingColumnsError(f"stage {stage.name!r} got a batch without columns {missing}")
    out = stage.process(batch)
    tables = [out] if isinstance(out, pa.Table) else out
    for table in tables:
        if not table.schema.equals(stage.gives.schema):
            raise TypeError(
                f"stage {stage.name!r} must give {stage.gives.name} rows; got schema "
                f"{table.schema.names}"
            )
        yield table


class _TaskCall:
    """What Ray Data runs for a task stage: set up once per process copy, then process."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self._ready = False

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        if not self._ready:
            self.stage.setup()
            self._ready = True
        yield from _outputs(self.stage, batch)


class _ActorCall:
    """What Ray Data runs for an actor stage: set up in the actor's constructor."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        stage.setup()

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        yield from _outputs(self.stage, batch)

    def __del__(self) -> None:
        stage = getattr(self, "stage", None)
        if stage is not None:
            stage.teardown()


def _named(call: type, stage: Stage) -> type:
    """``call`` (:class:`_TaskCall` or :class:`_ActorCall`) under the stage's name.

    Ray Data names an operator after the class it runs, and Ray titles a worker after what it
    runs: named so, the operator is ``MapBatches(decode)`` in Ray Data's logs and the dashboard,
    and the worker running it ``ray::MapWorker(MapBatches(embed))`` in ``ps`` (which is how
    ``benchmarks/bench_pipeline.py`` tells the stages' CPU apart), not ``_TaskCall`` for every
    stage. The class is made here, so it travels to the workers by value.
    """
    return type(stage.name, (call,), {"__module__": call.__module__, "__qualname__": stage.name})


def apply_stage(ds: Any, stage: Stage, worker_env: Mapping[str, str] | None = None) -> Any:
    """``ds.map_batches`` for one Ray stage, as its resources say (``worker_env``: environment
    variables for its workers, when the job's runtime environment cannot carry them)."""
    import ray.data as rd

    r = stage.resources
    common: dict[str, Any] = {"batch_format": "pyarrow", "num_cpus": r.num_cpus}
    if worker_env:
        common["runtime_env"] = {"env_vars": dict(worker_env)}
    if r.batch_size is not None:
        common["batch_size"] = r.batch_size
    if r.actor:
        out = ds.map_batches(
            _named(_ActorCall, stage),
            fn_constructor_kwargs={"stage": stage},
            compute=rd.ActorPoolStrategy(
                size=r.concurrency or 1,
                max_concurrent_calls_per_actor=r.calls_per_actor,
                enable_true_multi_threading=r.calls_per_actor > 1,
            ),
            **common,
        )
    else:
        out = ds.map_batches(
            _named(_TaskCall, stage)(stage),
            compute=rd.TaskPoolStrategy(size=r.concurrency) if r.concurrency else None,
            **common,
        )
    if r.rows_per_block:
        # Its output blocks cut by rows, in the same task (fused into the map).
        out = _fused_repartition(out, r.rows_per_block)
    return out


def _fused_repartition(ds: Any, rows: int) -> Any:
    """``ds.repartition(target_num_rows_per_block=rows)`` fused into the map before it.

    Ray Data (2.5x-2.6x) fuses a map and a non-strict repartition only when their remote
    arguments match, and a repartition gets none: left alone it runs as a task of its own asking
    for a whole CPU, which on a small machine can wait behind the stage's actors forever. Giving
    it the map's arguments (CPUs, runtime environment) lets the optimizer fuse the two, so the
    cut costs no task at all. If Ray's plan no longer has that shape, the plain repartition is
    kept.
    """
    out = ds.repartition(target_num_rows_per_block=rows)
    dag = getattr(getattr(out, "_logical_plan", None), "dag", None)
    ups = getattr(dag, "input_dependencies", None) or []
    args = getattr(dag, "ray_remote_args", None)
    if isinstance(args, dict) and len(ups) == 1 and isinstance(ups[0].ray_remote_args, dict):
        args.update(ups[0].ray_remote_args)
    return out


# ---- Ray ----------------------------------------------------------------------------------------


def init_ray(cfg: RayConfig, worker_env: Mapping[str, str] | None = None) -> bool:
    """Join the cluster given by ``ray.address`` or start a Ray of this job's own; no-op if this
    process is already connected. Returns whether this call connected.

    ``ray.address`` unset starts a new local Ray (``address="local"``) even when a cluster runs on
    the machine: a local job never joins a stranger's cluster. ``worker_env`` (environment
    variables for every worker) goes into the job's runtime environment; under ``ray job submit``
    Ray merges it with the submitted one (a variable set in both is refused by Ray).
    """
    import ray

    if ray.is_initialized():
        return False
    if not cfg.verbose:
        quiet_ray()
    kwargs: dict[str, Any] = {
        "ignore_reinit_error": True,
        "log_to_driver": cfg.log_to_driver,
        "logging_level": logging.INFO if cfg.verbose else logging.WARNING,
    }
    if cfg.address:
        kwargs["address"] = cfg.address
    else:
        kwargs["address"] = "local"
        kwargs["include_dashboard"] = False
        if cfg.num_cpus:
            kwargs["num_cpus"] = cfg.num_cpus
    # A local Ray started here runs its workers in this process's environment: the variables
    # already in it need no runtime environment, which would make Ray start every worker through
    # its setup wrapper (measured with benchmarks/bench_pipeline.py: Ray's own processes took
    # several CPU-seconds more per run).
    inherited = not cfg.address and all(
        os.environ.get(k) == v for k, v in (worker_env or {}).items()
    )
    if worker_env and not inherited:
        kwargs["runtime_env"] = {"env_vars": dict(worker_env)}
    ray.init(**kwargs)
    return True


def quiet_ray() -> None:
    """Keep Ray's start-up and executor chatter out of the job's console (``ray.verbose=false``).

    - Ray's Python loggers: WARNING and above only (``logging_level`` in :func:`init_ray`).
    - Ray Data's console handler: WARNING and above; its full log still goes to the session's
      ``ray-data.log``. The one warning that progress bars are off is dropped (the job's console
      replaces them).
    - The core worker's C++ log lines on the driver's stderr (e.g. the line about actor
      constructor arguments in the object store, which every Ray Data actor pool triggers) are
      filtered out (:func:`pipelines.core.console.hide_native_log_lines`); they stay in the
      session's ``python-core-driver-*.log``, and errors that stop the job surface as Python
      exceptions.
    """
    from pipelines.core.console import hide_native_log_lines

    hide_native_log_lines()
    import ray.data  # noqa: F401 - configures its logger on import

    data_logger = logging.getLogger("ray.data")
    for handler in data_logger.handlers:
        if type(handler).__name__ == "PlainRayHandler":
            handler.setLevel(logging.WARNING)
            handler.addFilter(_NoProgressBarNotice())


class _NoProgressBarNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Progress bars disabled")


def configure_data_context(ctx: Any) -> None:
    """Ray Data settings every pipeline relies on (also applied by the benchmarks)."""
    ctx.execution_options.preserve_order = False
    # Decoders yield a few segments at a time; small blocks let each go downstream as it comes
    # instead of being merged into one big block per task (memory bounded by segments).
    ctx.target_max_block_size = 16 * 1024 * 1024
    use_whole_cluster()


def use_whole_cluster() -> None:
    """Let Ray Data's executor budget every CPU of the cluster for the stages' fractional CPUs.

    Ray Data 2.60's default ("rate-based") cluster autoscaler reserves the cluster for a dataset
    through its autoscaling coordinator, which hands out what is left after the requested task
    shapes in whole units per node (``amount // requesters``): once it asks for one 0.75-CPU
    decode task, a 2-CPU machine's executor sees 1.75 CPUs, the embed actors hold 0.5, and the
    budget left (0.5) no longer fits a second decode task. Measured with
    ``benchmarks/bench_pipeline.py`` on 1,320 PDF pages: one decoder ran at a time for most of
    the run (43 s wall); with Ray Data's previous autoscaler ("V2"), which counts the cluster's
    own resources, two ran throughout (35 s). ``RAY_DATA_CLUSTER_AUTOSCALER`` set in the
    environment is kept, and nothing is changed for a Ray that does not know that choice.
    """
    key = "RAY_DATA_CLUSTER_AUTOSCALER"
    if key in os.environ:
        return
    try:
        from ray.data._internal.cluster_autoscaler import ClusterAutoscalerVersion
    except ImportError:
        return
    known = {v.value for v in ClusterAutoscalerVersion}
    if "V2" in known:
        os.environ[key] = "V2"


def cluster_cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 2))


# ---- driving -------------------------------------------------------------------------------------


def build(
    pipeline: Pipeline, blocks: Sequence[pa.Table], worker_env: Mapping[str, str] | None = None
) -> tuple[Any, list[Stage]]:
    """The Ray Data graph of the pipeline's Ray stages over ``blocks``, and its driver stages."""
    import ray.data as rd

    ray_stages = [s for s in pipeline.stages if not s.resources.on_driver]
    driver_stages = [s for s in pipeline.stages if s.resources.on_driver]
    # The blocks' metadata is read here, in the driver that holds them: ``from_arrow`` would
    # run one Ray task per block for it and wait for them (a worker to start first, ~1 s at a
    # job's start; hundreds of tasks for a window of small blocks).
    ds = rd.from_blocks(list(blocks))
    for stage in ray_stages:
        ds = apply_stage(ds, stage, worker_env)
    return ds, driver_stages


def run_pipeline(
    pipeline: Pipeline,
    ray_cfg: RayConfig,
    on_batch: Callable[[pa.Table], None],
    *,
    batch_size: int | None = 256,
    worker_env: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run ``pipeline`` to the end; ``on_batch`` gets every batch the last stage gives.

    ``batch_size`` rows per driver batch (None: each block as it arrives). ``worker_env``:
    environment variables every worker needs (dummy credentials for a local endpoint).

    Returns each stage's ``on_finish`` figures by stage name; a driver stage's also hold the
    CPU seconds it took in this process (``<name>_cpu_s``, e.g. ``write_cpu_s``). Exceptions
    from a stage (an infrastructure failure) propagate after the driver stages are torn down.
    """
    import ray.data as rd

    connected_here = init_ray(ray_cfg, worker_env)
    # Connected before this run (a notebook, a test session): the runtime environment is fixed,
    # so each stage's workers get the variables themselves.
    stage_env = worker_env if worker_env and not connected_here else None
    ctx = rd.DataContext.get_current()
    configure_data_context(ctx)
    # Ray Data's own bars only when asked for: the job's console shows the run's progress.
    ctx.enable_progress_bars = ray_cfg.verbose and sys.stderr.isatty()
    for stage in pipeline.stages:
        stage.on_start()
    driver_stages = [s for s in pipeline.stages if s.resources.on_driver]
    # CPU seconds each driver stage takes in this process (its thread): the driver's own work
    # and a driver stage's (the embedded store's writes) are one process to ps and psutil.
    driver_cpu = dict.fromkeys((s.name for s in driver_stages), 0.0)
    for stage in driver_stages:
        stage.setup()
    try:
        for window in pipeline.source.windows(cluster_cpus()):
            ds, driver = build(pipeline, window, stage_env)
            log.debug("pipeline %s: %s", pipeline.name, pipeline.describe())
            batches = ds.iter_batches(batch_size=batch_size, batch_format="pyarrow")
            try:
                for batch in batches:
                    for stage in driver:
                        cpu = time.thread_time()
                        out = list(_outputs(stage, batch))
                        driver_cpu[stage.name] += time.thread_time() - cpu
                        batch = pa.concat_tables(out) if out else stage.gives.empty()
                    on_batch(batch)
            finally:
                # Stops the execution now (its actors and tasks) when the run stops early, not
                # when the iterator is collected: a stopped run leaves nothing holding CPUs.
                close = getattr(batches, "close", None)
                if close is not None:
                    close()
    finally:
        for stage in driver_stages:
            stage.teardown()
    figures = {stage.name: stage.on_finish() for stage in pipeline.stages}
    for name, seconds in driver_cpu.items():
        figures[name] = {**figures[name], f"{name}_cpu_s": round(seconds, 3)}
    return figures
