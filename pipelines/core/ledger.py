"""The run ledger: every manifest row ends embedded, partial, skipped or dead-lettered, and nothing
per asset lives in the driver's memory.

The ledger is one SQLite file in the run folder (``<run_dir>/ledger.sqlite``), private to the run
and written by the driver only: a row per manifest row (what the plan decided, then what the run
made of it), a row per segment that reached the store, a row per failure. The plan fills it
(:meth:`RunLedger.plan_rows`); the driver then feeds it every batch that comes out of the pipeline
(:meth:`RunLedger.account`), which only adds to a small buffer of per-asset deltas; every second
(:meth:`RunLedger.flush`) the buffer goes to the file in one transaction, and the assets it made
complete are returned (to journal them). At the end :meth:`RunLedger.finalize` decides every
outcome in SQL, and the report, the dead letters and the journal entries are read back in chunks.

An asset is *embedded* only when every one of its segments was written. Otherwise, by the use
case's ``partial_assets``:

- ``drop`` (the default): it is dead-lettered with its failures (the first one's code in the
  journal), and the points it wrote are removed, so that the index never holds half an asset;
- ``keep``: when some of its segments were written and every other one failed by itself (its own
  failure row, placed at the segment), it ends *partial*: its written points stay, its failed
  segments are dead letters, and the journal keeps the code that decides the next run (a transient
  one when any failure was transient: the asset is embedded again; else the first: it is skipped).
  An asset that wrote nothing, or whose failure was the whole file's (or a whole part's), is
  dead-lettered as with ``drop``.

The file is a scratch table, not a state of record (that is :mod:`pipelines.core.journal`): it is
written without ``fsync`` and a killed run's ledger is never read again.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow as pa

from pipelines.core import codes
from pipelines.modalities import Registry, Usage, current

if TYPE_CHECKING:
    from pipelines.config.schema import PricesConfig

OUTCOMES = (
    "embedded",
    # usecase.partial_assets=keep: the written segments kept, the others dead letters.
    "partial",
    "skipped_unchanged",
    "skipped_dead_letter",
    "skipped_modality",
    "dead_lettered",
    # Only after an aborted run: neither embedded nor failed; the next run takes it up.
    "pending",
)
# Outcomes whose points stay in the collection.
KEPT = ("embedded", "partial")
_KEPT_SQL = "(" + ", ".join(f"'{o}'" for o in KEPT) + ")"
# What the plan decides per row: embed it, copy another row's points (same content), or skip it.
TODO, COPY = "todo", "copy"
_CHUNK = 5000
# usecase.partial_assets=keep: a failed asset that keeps its written points (SQL over ``plan``):
# some segments were written, and every other one failed by itself (a failure of the whole file,
# or of a whole part, leaves no way to tell which segments are missing).
_KEEPABLE = (
    "failed = 1 AND points > 0 AND expected IS NOT NULL "
    "AND NOT EXISTS (SELECT 1 FROM failures f WHERE f.asset_id = plan.asset_id "
    "AND COALESCE(f.segment_index, -1) < 0) "
    "AND segments + (SELECT COUNT(*) FROM missing m WHERE m.asset_id = plan.asset_id) >= expected"
)
# Flush the buffer at least this often (rows accounted), whatever the clock says.
_MAX_BUFFERED_ASSETS = 20_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS plan (
    seq INTEGER PRIMARY KEY,            -- the row's position in the manifest
    asset_id TEXT NOT NULL UNIQUE,
    uri TEXT,
    modality TEXT NOT NULL,
    content_version TEXT,
    decision TEXT NOT NULL,             -- todo | copy | skipped_*
    changed INTEGER NOT NULL DEFAULT 0, -- the collection holds an earlier version
    leader TEXT,                        -- copy: the asset whose points it gets
    outcome TEXT,
    expected INTEGER,                   -- segments the asset has (known once decoded)
    segments INTEGER NOT NULL DEFAULT 0,
    points INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    calls INTEGER NOT NULL DEFAULT 0,
    throttles INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    text_chars INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    images INTEGER NOT NULL DEFAULT 0,
    media_seconds REAL NOT NULL DEFAULT 0,
    audio_seconds REAL NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    path TEXT                           -- batch: embedded by a batch job (null: on demand)
);
CREATE TABLE IF NOT EXISTS segments (
    asset_id TEXT NOT NULL,
    segment_index INTEGER NOT NULL,
    PRIMARY KEY (asset_id, segment_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    asset_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT,
    segment_index INTEGER
);
CREATE INDEX IF NOT EXISTS failures_asset ON failures (asset_id);
CREATE TEMP VIEW IF NOT EXISTS missing AS  -- failed segments of an asset that were not written
    SELECT DISTINCT f.asset_id, f.segment_index FROM failures f WHERE f.segment_index >= 0
    AND NOT EXISTS (SELECT 1 FROM segments s WHERE s.asset_id = f.asset_id
                    AND s.segment_index = f.segment_index);
CREATE TABLE IF NOT EXISTS notes (
    asset_id TEXT NOT NULL,
    note TEXT NOT NULL,
    segments INTEGER NOT NULL,
    PRIMARY KEY (asset_id, note)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leaders (
    modality TEXT NOT NULL,
    content_version TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    PRIMARY KEY (modality, content_version)
) WITHOUT ROWID;
"""


@dataclass
class Failure:
    stage: str
    code: str
    message: str
    segment_index: int | None = None


class Settled(NamedTuple):
    """An asset whose outcome the run decided (to journal, and to clean up after).

    A named tuple: a run makes one per asset, and a frozen dataclass cost ~2 us of the
    driver's CPU each to build (``benchmarks/bench_scale.py``'s estimate makes a million).
    """

    asset_id: str
    modality: str
    content_version: str | None
    outcome: str  # embedded | partial | dead_lettered
    points: int
    error_code: str | None = None
    # The collection held an earlier version of it (removed once this one is kept).
    changed: bool = False

    @property
    def kept(self) -> bool:
        """Its points stay in the collection (embedded, or partial)."""
        return self.outcome in KEPT


@dataclass(frozen=True)
class AssetView:
    """One asset's row of the ledger, read back (copies, tests)."""

    asset_id: str
    modality: str
    content_version: str | None
    decision: str
    outcome: str | None
    expected: int | None
    segments: int
    points: int
    failures: tuple[Failure, ...]

    @property
    def complete(self) -> bool:
        return not self.failures and self.expected is not None and self.segments >= self.expected


@dataclass
class Progress:
    """Running totals of a run, kept as rows arrive (never recomputed over every asset)."""

    total: int = 0
    settled: int = 0
    failed: int = 0
    points: int = 0
    bedrock_calls: int = 0
    throttles: int = 0


@dataclass(slots=True)
class _Delta:
    """What one flush adds to one asset's row."""

    expected: int | None = None
    written: set[int] = field(default_factory=set)
    failures: list[Failure] = field(default_factory=list)
    calls: int = 0
    throttles: int = 0
    retries: int = 0
    usage: Usage = field(default_factory=Usage)


class _Columns:
    """A batch's columns as Python lists, each converted the first time it is read."""

    __slots__ = ("_batch", "_lists", "_none", "names")

    def __init__(self, batch: pa.Table) -> None:
        self._batch = batch
        self._lists: dict[str, list[Any]] = {}
        self._none: list[None] | None = None
        self.names = batch.column_names

    def __getitem__(self, name: str) -> list[Any]:
        values = self._lists.get(name)
        if values is None:
            if name not in self.names:
                raise KeyError(name)
            values = self._lists[name] = self._batch.column(name).to_pylist()
        return values

    def get(self, name: str) -> list[Any]:
        """The column, or None for every row when the batch has no such column."""
        if name in self.names:
            return self[name]
        if self._none is None:
            self._none = [None] * self._batch.num_rows
        return self._none


class _Row(Mapping[str, Any]):
    """One row of a batch, read-only, over :class:`_Columns` (what a modality's ``usage`` reads)."""

    __slots__ = ("_cols", "_i")

    def __init__(self, cols: _Columns, i: int) -> None:
        self._cols = cols
        self._i = i

    def __getitem__(self, key: str) -> Any:
        return self._cols[key][self._i]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols.names)

    def __len__(self) -> int:
        return len(self._cols.names)


class RunLedger:
    """Tracks every asset of a run from plan to outcome, on disk (see the module docstring)."""

    def __init__(
        self, path: str | Path, modalities: Registry | None = None, keep_partial: bool = False
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.modalities = modalities or current()
        # usecase.partial_assets=keep (see the module docstring).
        self.keep_partial = keep_partial
        self.db = sqlite3.connect(self.path, isolation_level=None)
        # The one classification of codes (pipelines.core.codes), callable from SQL.
        self.db.create_function("permanent", 1, codes.is_permanent, deterministic=True)
        # A scratch file: no fsync, rollback journal in memory, a bounded page cache.
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA journal_mode=MEMORY")
        self.db.execute("PRAGMA cache_size=-32768")
        self.db.executescript(_SCHEMA)
        self.progress = Progress()
        self._buffer: dict[str, _Delta] = {}

    def close(self) -> None:
        self.db.close()

    # -- the plan --------------------------------------------------------------------------------

    def plan_rows(self, rows: Sequence[tuple[Any, ...]]) -> str | None:
        """Add planned rows ``(seq, asset_id, uri, modality, content_version, decision, changed,
        leader)``; returns the first asset id already planned (a duplicate), else None. A skipped
        row's outcome is its decision."""
        try:
            with self._tx():
                self.db.executemany(
                    "INSERT INTO plan (seq, asset_id, uri, modality, content_version, decision, "
                    "changed, leader, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*r, None if r[5] in (TODO, COPY) else r[5]) for r in rows],
                )
        except sqlite3.IntegrityError:
            ids = [r[1] for r in rows]
            held = self._existing(ids)
            return next(a for a in ids if a in held)
        self.progress.total += sum(1 for r in rows if r[5] in (TODO, COPY))
        return None

    def first_seq(self, asset_id: str) -> int | None:
        row = self.db.execute("SELECT seq FROM plan WHERE asset_id = ?", (asset_id,)).fetchone()
        return None if row is None else int(row[0])

    def _existing(self, ids: Sequence[str]) -> set[str]:
        out: set[str] = set()
        for chunk in _chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT asset_id FROM plan WHERE asset_id IN ({marks})", chunk)
            out.update(r[0] for r in rows)
        return out

    def leaders(self, candidates: Sequence[tuple[str, str, str]]) -> dict[str, str]:
        """For ``(asset_id, modality, content_version)`` rows to embed, the rows whose content an
        earlier row of the run has: asset id -> that earlier row's asset id."""
        out: dict[str, str] = {}
        insert = (
            "INSERT OR IGNORE INTO leaders (modality, content_version, asset_id) VALUES (?, ?, ?)"
        )
        find = "SELECT asset_id FROM leaders WHERE modality = ? AND content_version = ?"
        with self._tx():
            for asset_id, modality, version in candidates:
                # One primary-key probe a row: new content leads, known content follows.
                if self.db.execute(insert, (modality, version, asset_id)).rowcount:
                    continue
                leader = self.db.execute(find, (modality, version)).fetchone()[0]
                if leader != asset_id:
                    out[asset_id] = leader
        return out

    def asset_ids(self) -> Iterator[str]:
        """Every planned asset id, in manifest order, streamed."""
        cursor = self.db.execute("SELECT asset_id FROM plan ORDER BY seq")
        while rows := cursor.fetchmany(_CHUNK):
            yield from (r[0] for r in rows)

    def count(self, decision: str | None = None, outcome: str | None = None) -> int:
        where, params = ["1"], []
        if decision is not None:
            where.append("decision = ?")
            params.append(decision)
        if outcome is not None:
            where.append("outcome = ?")
            params.append(outcome)
        sql = f"SELECT COUNT(*) FROM plan WHERE {' AND '.join(where)}"
        return int(self.db.execute(sql, params).fetchone()[0])

    def changed_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM plan WHERE changed = 1").fetchone()[0])

    def leader_of(self, asset_id: str) -> str:
        """The asset whose points a ``copy`` row gets."""
        row = self.db.execute("SELECT leader FROM plan WHERE asset_id = ?", (asset_id,)).fetchone()
        if row is None or row[0] is None:
            raise KeyError(f"{asset_id!r} is not a copy")
        return str(row[0])

    # -- accounting ------------------------------------------------------------------------------

    def account(self, batch: pa.Table, via: str | None = None) -> None:
        """Account for one batch of write acknowledgements (the last stage's output).

        ``via="batch"``: rows read from a batch job's output; they made no call, and a segment's
        usage is counted on the row whose ``input_tokens`` is set (its first embedding).

        Column by column: each column the accounting reads becomes one Python list, and a
        modality's ``usage`` gets a view of its row (:class:`_Row`) that converts only the
        columns it reads, instead of a dict of every column for every row. Measured alone on
        inline-text acknowledgements: ~6 instead of ~9 us of CPU a row. In a 1,000,000-row
        estimate the driver's accounting is the largest part of its work.
        """
        if not batch.num_rows:
            return
        cols = _Columns(batch)
        # A batch may lack some of these columns (a decode stage's dead letters): None each.
        ids, counts, errors = cols["asset_id"], cols.get("segment_count"), cols.get("error_code")
        calls_in, throttles_in = cols.get("bedrock_calls"), cols.get("throttles")
        retries_in, tokens = cols.get("retries"), cols.get("input_tokens")
        segments, names = cols.get("segment_index"), cols.get("modality")
        modalities: dict[str, Any] = {}
        progress = self.progress
        for i, asset_id in enumerate(ids):
            delta = self._delta(asset_id)
            count = counts[i]
            if count and count > 0:
                delta.expected = int(count)
            calls = int(calls_in[i] or 0)
            throttles = int(throttles_in[i] or 0)
            delta.calls += calls
            delta.throttles += throttles
            delta.retries += int(retries_in[i] or 0)
            progress.bedrock_calls += calls
            progress.throttles += throttles
            if errors[i] is not None:
                delta.failures.append(
                    Failure(
                        cols.get("error_stage")[i] or "unknown",
                        errors[i],
                        cols.get("error_message")[i] or "",
                        segments[i],
                    )
                )
                continue
            delta.usage.input_tokens += int(tokens[i] or 0)
            # Usage for the cost estimate is counted once per segment (its first embedding row).
            if calls_in[i] or (via == "batch" and tokens[i] is not None):
                name = str(names[i])
                if name not in modalities:
                    modalities[name] = self.modalities.get(name)
                modality = modalities[name]
                if modality is not None:
                    delta.usage.add(modality.usage(_Row(cols, i)))
            delta.written.add(int(segments[i]))

    def set_path(self, asset_ids: Sequence[str], path: str | None) -> None:
        """Say which path these assets took (``batch``; None: on demand): it picks their price
        table."""
        with self._tx():
            self.db.executemany(
                "UPDATE plan SET path = ? WHERE asset_id = ?", [(path, a) for a in asset_ids]
            )

    def still_todo(self, asset_ids: Sequence[str]) -> dict[str, str | None]:
        """Of these assets, those this run still embeds (to do, not taken by a batch job):
        asset id -> the content version it embeds."""
        out: dict[str, str | None] = {}
        for chunk in _chunks(asset_ids, 900):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT asset_id, content_version FROM plan WHERE decision = 'todo' AND path IS "
                f"NULL AND asset_id IN ({marks})",
                chunk,
            )
            out.update(rows.fetchall())
        return out

    def by_path(self) -> dict[str, dict[str, Any]]:
        """Assets to embed, embedded, partial and their cost, by the path they took."""
        rows = self.db.execute(
            "SELECT COALESCE(path, 'on_demand'), COUNT(*), "
            "SUM(CASE WHEN outcome = 'embedded' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN outcome = 'partial' THEN 1 ELSE 0 END), SUM(segments), SUM(cost) "
            "FROM plan WHERE decision = 'todo' GROUP BY 1 ORDER BY 1"
        )
        return {
            p: {"assets": int(n), "embedded": int(e or 0), "partial": int(k or 0),
                "segments": int(g or 0), "cost_usd": round(float(c or 0.0), 6)}
            for p, n, e, k, g, c in rows
        }  # fmt: skip

    def fail(self, asset_id: str, stage: str, code: str, message: str) -> None:
        """Fail a whole asset from the driver (e.g. a copy whose source failed)."""
        self._delta(asset_id).failures.append(Failure(stage, code, message))

    def buffered(self) -> int:
        return len(self._buffer)

    # The buffer goes to the file at least this often, and sooner when it holds this many assets:
    # what the driver holds per asset stays bounded whatever the corpus.
    FLUSH_EVERY_S = 1.0
    FLUSH_ASSETS = 20_000

    def due(self, since: float) -> bool:
        """Whether a flush is due, the last one having been at ``since`` (``time.monotonic``)."""
        return (
            self.buffered() >= self.FLUSH_ASSETS or time.monotonic() - since >= self.FLUSH_EVERY_S
        )

    def _delta(self, asset_id: str) -> _Delta:
        delta = self._buffer.get(asset_id)
        if delta is None:
            delta = self._buffer[asset_id] = _Delta()
        return delta

    def flush(self) -> list[Settled]:
        """Write the buffered deltas in one transaction; returns the assets they made complete.

        Per asset: its written segments, then one ``UPDATE`` of its row (counters, segments,
        points) and, for the complete ones, one ``UPDATE ... RETURNING`` that marks them
        embedded and returns them. ``account`` + ``flush`` on 98,304 inline-text
        acknowledgements, with a job's collector settings
        (:func:`~pipelines.core.job_entry.job_gc`): ~11-12 us of CPU a row, against ~13-15 us
        with a statement a row more for the points and a ``SELECT`` before the outcome
        (``benchmarks/README.md``).
        """
        if not self._buffer:
            return []
        buffer, self._buffer = self._buffer, {}
        ids = list(buffer)
        with self._tx():
            self.db.executemany(
                "INSERT OR IGNORE INTO segments VALUES (?, ?)",
                [(a, s) for a, d in buffer.items() for s in d.written],
            )
            self.db.executemany(
                "INSERT INTO failures VALUES (?, ?, ?, ?, ?)",
                [
                    (a, f.stage, f.code, f.message, f.segment_index)
                    for a, d in buffer.items()
                    for f in d.failures
                ],
            )
            self.db.executemany(
                "INSERT INTO notes VALUES (?, ?, ?) ON CONFLICT (asset_id, note) "
                "DO UPDATE SET segments = segments + excluded.segments",
                [(a, n, k) for a, d in buffer.items() for n, k in d.usage.notes.items()],
            )
            # Only an asset this flush brings a failure for can become failed now.
            newly_failed = 0
            failing = [a for a, d in buffer.items() if d.failures]
            for chunk in _chunks(failing, 900):
                marks = ",".join("?" * len(chunk))
                newly_failed += self.db.execute(
                    f"UPDATE plan SET failed = 1 WHERE failed = 0 AND asset_id IN ({marks})",
                    chunk,
                ).rowcount
            # One statement a row: the counters, the segments written so far, and the points an
            # embedded asset holds (a copy's points are its leader's, set when it settles).
            self.db.executemany(
                "UPDATE plan SET expected = COALESCE(?, expected), calls = calls + ?, "
                "throttles = throttles + ?, retries = retries + ?, text_chars = text_chars + ?, "
                "input_tokens = input_tokens + ?, images = images + ?, "
                "media_seconds = media_seconds + ?, audio_seconds = audio_seconds + ?, "
                "segments = (SELECT COUNT(*) FROM segments s WHERE s.asset_id = plan.asset_id), "
                "points = CASE WHEN decision = ? "
                "THEN (SELECT COUNT(*) FROM segments s WHERE s.asset_id = plan.asset_id) "
                "ELSE points END "
                "WHERE asset_id = ?",
                [
                    (
                        d.expected,
                        d.calls,
                        d.throttles,
                        d.retries,
                        d.usage.text_chars,
                        d.usage.input_tokens,
                        d.usage.images,
                        d.usage.media_seconds,
                        d.usage.audio_seconds,
                        TODO,
                        a,
                    )
                    for a, d in buffer.items()
                ],
            )
            done = self._complete_among(ids)
        self.progress.failed += newly_failed
        self.progress.settled += newly_failed + len(done)
        self.progress.points += sum(len(d.written) for d in buffer.values())
        return done

    def _complete_among(self, ids: Sequence[str]) -> list[Settled]:
        """Mark the assets among ``ids`` that just became complete ``embedded``; return them."""
        done: list[Settled] = []
        for chunk in _chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "UPDATE plan SET outcome = 'embedded' "
                f"WHERE asset_id IN ({marks}) AND outcome IS NULL AND failed = 0 "
                "AND expected IS NOT NULL AND segments >= expected "
                "RETURNING asset_id, modality, content_version, points, changed",
                chunk,
            ).fetchall()
            done.extend(
                Settled(a, m, v, "embedded", int(p), None, bool(c)) for a, m, v, p, c in rows
            )
        return done

    def settle_copy(self, asset_id: str, expected: int, points: int) -> Settled:
        """A copy got its leader's points: complete and ``embedded``."""
        with self._tx():
            self.db.execute(
                "UPDATE plan SET expected = ?, segments = ?, points = ?, outcome = 'embedded' "
                "WHERE asset_id = ?",
                (expected, expected, points, asset_id),
            )
            row = self.db.execute(
                "SELECT modality, content_version, changed FROM plan WHERE asset_id = ?",
                (asset_id,),
            ).fetchone()
        self.progress.settled += 1
        self.progress.points += points
        return Settled(asset_id, row[0], row[1], "embedded", points, None, bool(row[2]))

    def keepable(self, asset_id: str) -> bool:
        """The asset failed but keeps its written points (``keep_partial``): it ends ``partial``
        at :meth:`finalize`, and so do the copies of it."""
        if not self.keep_partial:
            return False
        row = self.db.execute(
            f"SELECT 1 FROM plan WHERE asset_id = ? AND {_KEEPABLE}", (asset_id,)
        ).fetchone()
        return row is not None

    def copy_partial(self, asset_id: str, leader: str, points: int) -> None:
        """A copy got the points of a :meth:`keepable` leader: it takes the leader's written
        segments and failures too, and :meth:`finalize` decides it as it decides the leader."""
        why = f"same content as {leader!r}: "
        with self._tx():
            self.db.execute(
                "INSERT OR IGNORE INTO segments SELECT ?, segment_index FROM segments "
                "WHERE asset_id = ?",
                (asset_id, leader),
            )
            self.db.execute(
                "INSERT INTO failures SELECT ?, stage, code, ? || COALESCE(message, ''), "
                "segment_index FROM failures WHERE asset_id = ? ORDER BY rowid",
                (asset_id, why, leader),
            )
            self.db.execute(
                "UPDATE plan SET expected = (SELECT expected FROM plan p WHERE p.asset_id = ?), "
                "segments = (SELECT COUNT(*) FROM segments s WHERE s.asset_id = plan.asset_id), "
                "points = ?, failed = 1 WHERE asset_id = ?",
                (leader, points, asset_id),
            )
        self.progress.failed += 1
        self.progress.settled += 1
        self.progress.points += points

    def view(self, asset_id: str) -> AssetView:
        row = self.db.execute(
            "SELECT asset_id, modality, content_version, decision, outcome, expected, segments, "
            "points FROM plan WHERE asset_id = ?",
            (asset_id,),
        ).fetchone()
        if row is None:
            raise KeyError(asset_id)
        failures = tuple(
            Failure(s, c, m, i)
            for s, c, m, i in self.db.execute(
                "SELECT stage, code, message, segment_index FROM failures WHERE asset_id = ? "
                "ORDER BY rowid",
                (asset_id,),
            )
        )
        a, m, v, d, o, e, n, p = row
        return AssetView(a, m, v, d, o, e, int(n), int(p), failures)

    # -- the end ---------------------------------------------------------------------------------

    def finalize(self, prices: PricesConfig, pending: bool = False) -> None:
        """Decide every outcome (after the last :meth:`flush`); price every asset's usage.

        A failed asset is ``partial`` when ``keep_partial`` and it is :meth:`keepable`, else
        dead-lettered. An asset neither complete nor failed is dead-lettered ``incomplete``, or,
        when the run was aborted (``pending``), left ``pending`` for the next run.
        """
        self.flush()
        open_rows = "outcome IS NULL AND decision IN ('todo', 'copy')"
        with self._tx():
            self.db.execute(
                f"UPDATE plan SET outcome = 'embedded' WHERE {open_rows} AND failed = 0 "
                "AND expected IS NOT NULL AND segments >= expected"
            )
            if self.keep_partial:
                self.db.execute(
                    f"UPDATE plan SET outcome = 'partial' WHERE {open_rows} AND {_KEEPABLE}"
                )
            if pending:
                self.db.execute(
                    f"UPDATE plan SET outcome = 'pending' WHERE {open_rows} AND failed = 0"
                )
            self.db.execute(
                "INSERT INTO failures SELECT asset_id, 'write', ?, segments || ' of ' || "
                "COALESCE(expected, 'an unknown number of') || ' segments reached the index', "
                f"NULL FROM plan WHERE {open_rows} AND failed = 0",
                (codes.INCOMPLETE,),
            )
            self.db.execute(
                f"UPDATE plan SET failed = 1, outcome = 'dead_lettered' WHERE {open_rows}"
            )
        self._price(prices)

    def _price(self, prices: PricesConfig) -> None:
        """Every asset's cost, by its modality's cost rule, from its summed usage, at the price
        table of the path it took (``prices.batch`` for batch jobs)."""
        batch_prices = prices.for_batch()
        cursor = self.db.execute(
            "SELECT asset_id, modality, text_chars, input_tokens, images, media_seconds, "
            "audio_seconds, path FROM plan WHERE calls > 0 OR path = 'batch'"
        )
        costs = []
        while rows := cursor.fetchmany(_CHUNK):
            for asset_id, name, chars, tokens, images, media, audio, path in rows:
                modality = self.modalities.get(name)
                usage = Usage(chars, tokens, images, media, audio)
                table = batch_prices if path == "batch" else prices
                costs.append((modality.cost(usage, table) if modality else 0.0, asset_id))
        with self._tx():
            self.db.executemany("UPDATE plan SET cost = ? WHERE asset_id = ?", costs)

    def cost_at(self, prices: PricesConfig) -> float:
        """What the kept assets' usage would cost at ``prices`` (estimates: the on-demand
        and the batch table side by side); nothing is written."""
        cursor = self.db.execute(
            "SELECT modality, text_chars, input_tokens, images, media_seconds, audio_seconds "
            f"FROM plan WHERE outcome IN {_KEPT_SQL} AND decision = 'todo'"
        )
        total = 0.0
        while rows := cursor.fetchmany(_CHUNK):
            for name, chars, tokens, images, media, audio in rows:
                modality = self.modalities.get(name)
                if modality is not None:
                    total += modality.cost(Usage(chars, tokens, images, media, audio), prices)
        return total

    def unkept(self) -> Iterator[list[tuple[str, str | None]]]:
        """``(asset_id, content_version)`` whose points of this version must leave the collection,
        in chunks: assets not kept that wrote points, and dead-lettered ones the collection held
        before (an asset kept ``partial`` by an earlier run, whose whole version failed now)."""
        cursor = self.db.execute(
            "SELECT asset_id, content_version FROM plan WHERE (outcome IN "
            "('dead_lettered', 'pending') AND points > 0) OR (outcome = 'dead_lettered' "
            "AND changed = 1)"
        )
        while rows := cursor.fetchmany(_CHUNK):
            yield [(r[0], r[1]) for r in rows]

    def missing_segments(self) -> Iterator[list[tuple[str, str | None, list[int]]]]:
        """``(asset_id, content_version, segment indices)`` of the partial assets' failed
        segments, in chunks: the collection holds none of them (an earlier run of the same
        version, or a killed one, may have written them)."""
        cursor = self.db.execute(
            "SELECT p.asset_id, p.content_version, GROUP_CONCAT(m.segment_index) FROM plan p "
            "JOIN missing m ON m.asset_id = p.asset_id WHERE p.outcome = 'partial' "
            "GROUP BY p.asset_id ORDER BY p.seq"
        )
        while rows := cursor.fetchmany(_CHUNK):
            yield [(a, v, sorted(int(i) for i in str(s).split(","))) for a, v, s in rows]

    def with_failures(self) -> Iterator[list[Settled]]:
        """The dead-lettered and partial assets (to journal), in chunks, with the code the
        journal keeps: a dead-lettered asset's first failure's; a partial asset's first transient
        failure's when it has one (the next run embeds it again), else its first (the next run
        skips it: its segments would fail the same way)."""
        cursor = self.db.execute(
            "SELECT asset_id, modality, content_version, points, changed, outcome, CASE outcome "
            "WHEN 'partial' THEN (SELECT code FROM failures f WHERE f.asset_id = plan.asset_id "
            "ORDER BY permanent(f.code), f.rowid LIMIT 1) ELSE (SELECT code FROM failures f "
            "WHERE f.asset_id = plan.asset_id ORDER BY f.rowid LIMIT 1) END FROM plan "
            "WHERE outcome IN ('dead_lettered', 'partial')"
        )
        while rows := cursor.fetchmany(_CHUNK):
            yield [Settled(a, m, v, o, int(p), code, bool(c)) for a, m, v, p, c, o, code in rows]

    def kept(self) -> Iterator[list[tuple[str, int]]]:
        """``(asset_id, points)`` of the assets whose points this run leaves in the collection
        (embedded or partial), in chunks."""
        cursor = self.db.execute(
            f"SELECT asset_id, points FROM plan WHERE outcome IN {_KEPT_SQL} ORDER BY seq"
        )
        while rows := cursor.fetchmany(_CHUNK):
            yield [(r[0], int(r[1])) for r in rows]

    def dead_letters(self) -> Iterator[dict[str, Any]]:
        """One row per failure of every dead-lettered or partial asset (``asset_outcome`` says
        which), in manifest order."""
        cursor = self.db.execute(
            "SELECT p.asset_id, p.uri, p.modality, f.stage, f.code, f.message, f.segment_index, "
            "p.outcome FROM plan p JOIN failures f ON f.asset_id = p.asset_id "
            "WHERE p.outcome IN ('dead_lettered', 'partial') ORDER BY p.seq, f.rowid"
        )
        keys = (
            "asset_id",
            "uri",
            "modality",
            "stage",
            "error_code",
            "message",
            "segment_index",
            "asset_outcome",
        )
        while rows := cursor.fetchmany(_CHUNK):
            yield from (dict(zip(keys, r, strict=True)) for r in rows)

    def dead_letters_by_code(self) -> dict[str, int]:
        """Dead-letter rows (failures of dead-lettered and partial assets) by error code."""
        rows = self.db.execute(
            "SELECT f.code, COUNT(*) FROM failures f JOIN plan p ON p.asset_id = f.asset_id "
            "WHERE p.outcome IN ('dead_lettered', 'partial') GROUP BY 1 ORDER BY 1"
        )
        return {code: int(n) for code, n in rows}

    def totals(self) -> Iterator[dict[str, Any]]:
        """Sums per modality and outcome (the report's figures)."""
        cursor = self.db.execute(
            "SELECT modality, COALESCE(outcome, 'pending'), COUNT(*), SUM(segments), "
            f"SUM(CASE WHEN outcome IN {_KEPT_SQL} THEN points ELSE 0 END), SUM(calls), "
            "SUM(throttles), SUM(retries), SUM(input_tokens), SUM(cost) FROM plan "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        )
        keys = (
            "modality",
            "outcome",
            "rows",
            "segments",
            "points_written",
            "bedrock_calls",
            "throttled",
            "retries",
            "input_tokens",
            "cost_usd",
        )
        for row in cursor.fetchall():
            yield dict(zip(keys, row, strict=True))

    def usage_by_modality(self) -> dict[str, dict[str, float]]:
        """Summed usage per modality (estimates): characters, images and seconds sent."""
        rows = self.db.execute(
            "SELECT modality, SUM(text_chars), SUM(images), SUM(media_seconds), "
            "SUM(audio_seconds) FROM plan GROUP BY modality"
        )
        keys = ("text_chars", "images", "media_seconds", "audio_seconds")
        return {m: dict(zip(keys, vals, strict=True)) for m, *vals in rows}

    def notes(self) -> dict[str, dict[str, int]]:
        """Per modality: note -> kept assets it applies to (e.g. ``audio_only_video``)."""
        out: dict[str, dict[str, int]] = {}
        rows = self.db.execute(
            "SELECT p.modality, n.note, COUNT(*) FROM notes n JOIN plan p ON "
            f"p.asset_id = n.asset_id WHERE p.outcome IN {_KEPT_SQL} GROUP BY 1, 2"
        )
        for modality, note, count in rows:
            out.setdefault(modality, {})[note] = int(count)
        return out

    # -- plumbing --------------------------------------------------------------------------------

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN")

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def _tx(self) -> RunLedger._Tx:
        return RunLedger._Tx(self.db)


def _chunks(items: Sequence[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
