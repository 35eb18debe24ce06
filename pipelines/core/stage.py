"""The stage contract: what every step of every pipeline is.

A stage declares

- its ``name``;
- the row type it ``takes`` and the one it ``gives`` (from the column table,
  :mod:`pipelines.core.rows`): the runner checks that consecutive stages chain, that every input
  batch has the columns the stage takes, and that every output batch has exactly the schema it
  gives;
- its :class:`Resources` (CPUs, how many at once, task or actor, where it runs), set apart from its
  own arguments so that the same stage runs small on a laptop and wide on a cluster;
- its set-up: :meth:`Stage.on_start` / :meth:`Stage.on_finish` run once in the driver around the
  run (shared actors, collections, the figures a report wants), :meth:`Stage.setup` /
  :meth:`Stage.teardown` once in each worker (clients); :meth:`Stage.live` gives the console
  figures while the run goes;

and maps one Arrow batch to one batch, or to a stream of batches (:meth:`Stage.process`). A record
that cannot be processed is not raised: it leaves the stage as a dead-letter row (see
:func:`pipelines.core.rows.dead_letter_row`), and later stages pass it through.

A pipeline is a source and a list of stages; :mod:`pipelines.core.runner` turns it into a Ray Data
graph and drives it.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

if TYPE_CHECKING:
    from pipelines.config.schema import StageResourcesConfig
    from pipelines.core.rows import RowType


@dataclass(frozen=True)
class Resources:
    """Where and how wide a stage runs (never what it does).

    ``actor=False``: stateless Ray tasks, one per input block, ``concurrency`` at most at once
    (None: as many as the CPUs allow). ``actor=True``: a pool of ``concurrency`` long-lived actors
    (clients and connections are made once per actor), each serving ``calls_per_actor`` batches at
    once. ``on_driver=True``: the stage runs in the driver process on the batches the driver
    iterates (for a store that allows one writer process, like Qdrant's embedded mode); driver
    stages must come last. ``batch_size``: rows per call (None: Ray Data's default; for task
    stages that decode whole blocks, 1 row per call, one block per task). ``rows_per_block``: the
    stage's output blocks hold at most this many rows (None: only Ray Data's byte target), so
    that the next stage's tasks stay small and their results reach the driver as the run goes.
    """

    num_cpus: float = 1.0
    concurrency: int | None = None
    actor: bool = False
    calls_per_actor: int = 1
    batch_size: int | None = None
    rows_per_block: int | None = None
    on_driver: bool = False

    def __post_init__(self) -> None:
        if self.num_cpus < 0:
            raise ValueError(f"num_cpus must be >= 0, got {self.num_cpus}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1 or None, got {self.concurrency}")
        if self.calls_per_actor < 1:
            raise ValueError(f"calls_per_actor must be >= 1, got {self.calls_per_actor}")

    @classmethod
    def of(cls, cfg: StageResourcesConfig, **fixed: Any) -> Resources:
        """Resources from a stage's ``resources.<stage>`` config, plus what the stage fixes."""
        return cls(num_cpus=cfg.num_cpus, concurrency=cfg.concurrency, **fixed)


class Stage(abc.ABC):
    """One step of a pipeline (see the module docstring). Instances must pickle: the runner
    ships them to Ray workers, so clients are made in :meth:`setup`, not in ``__init__``."""

    name: ClassVar[str]
    takes: ClassVar[RowType]
    gives: ClassVar[RowType]
    resources: Resources = Resources()

    def on_start(self) -> None:  # noqa: B027 - optional hook
        """Once, in the driver, after Ray is up and before any batch (shared actors, checks)."""

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Once per worker (task or actor) before its first batch: make clients here."""

    @abc.abstractmethod
    def process(self, batch: pa.Table) -> pa.Table | Iterator[pa.Table]:
        """Map a batch of ``takes`` rows to ``gives`` rows (a table, or a stream of tables)."""

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`setup` made (driver stages and actors that exit cleanly)."""

    def live(self) -> dict[str, Any]:
        """In the driver, at any time during the run: figures for the console (cheap)."""
        return {}

    def on_finish(self) -> dict[str, Any]:
        """Once, in the driver, after the last batch: figures for the run's report."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.takes.name} -> {self.gives.name}, {self.resources})"
