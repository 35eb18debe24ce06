"""The journal: the state of record of every collection's backfills.

One SQLite file (``<state.path>/journal.sqlite``, on the driver's machine) holds, per physical
collection and asset id, what the collection holds of the asset (content version, fingerprint,
outcome, points, the run that wrote it; for a dead-lettered or partial asset, the code that
decides whether the next run embeds it again, and whether it is permanent), plus the runs, the
fingerprints each collection was built with, and a lock per collection. SQLite because the journal
must survive ``kill -9`` at any moment (transactions, write-ahead log), stream (lookups in chunks,
no per-asset object in the driver) and hold tens of millions of rows with an index, without a
server: it ships with Python.

An entry is written only after the asset's points are in the store (and the points of its previous
version removed), so a crash leaves at worst an asset that is embedded but not yet journaled: the
next run embeds it again, to the same point ids.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.core.errors import ConfigError

_CHUNK = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    collection TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    content_version TEXT,
    modality TEXT,
    fingerprint TEXT,
    outcome TEXT NOT NULL,
    error_code TEXT,
    permanent INTEGER NOT NULL DEFAULT 0,
    points INTEGER NOT NULL DEFAULT 0,
    run_id TEXT,
    updated_at REAL,
    PRIMARY KEY (collection, asset_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fingerprints (
    collection TEXT NOT NULL,
    modality TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (collection, modality)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    collection TEXT,
    status TEXT,
    started_at REAL,
    ended_at REAL,
    host TEXT,
    pid INTEGER,
    report TEXT
);
CREATE TABLE IF NOT EXISTS batch_jobs (
    name TEXT PRIMARY KEY,              -- the job's name (unique per account)
    collection TEXT NOT NULL,
    client_token TEXT NOT NULL,
    job_arn TEXT,                       -- null until CreateModelInvocationJob answered
    input_uri TEXT NOT NULL,
    output_uri TEXT NOT NULL,
    records_path TEXT NOT NULL,         -- Parquet: record id -> asset and segment
    records INTEGER NOT NULL,
    status TEXT NOT NULL,               -- staged | a service status | collected
    run_id TEXT,
    submitted_at REAL,
    updated_at REAL
);
CREATE TABLE IF NOT EXISTS invocations (
    collection TEXT NOT NULL,
    token TEXT NOT NULL,                -- the job's client token (derived from its input)
    arn TEXT,
    asset_id TEXT NOT NULL,
    content_version TEXT,
    run_id TEXT,                        -- the run that started it
    status TEXT NOT NULL,               -- in_progress | collected
    started_at REAL,
    updated_at REAL,
    PRIMARY KEY (collection, token)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS invocations_asset ON invocations (collection, asset_id);
CREATE TABLE IF NOT EXISTS locks (
    collection TEXT PRIMARY KEY,
    run_id TEXT,
    host TEXT,
    pid INTEGER,
    heartbeat REAL
);
"""


@dataclass(frozen=True)
class Entry:
    """What the journal knows of one asset in one collection."""

    asset_id: str
    content_version: str | None
    modality: str | None
    fingerprint: str | None
    outcome: str  # embedded | partial | dead_lettered
    error_code: str | None = None
    permanent: bool = False
    points: int = 0


@dataclass(frozen=True)
class BatchJobEntry:
    """A batch inference job the journal knows (``bedrock.mode=batch``)."""

    name: str
    collection: str
    client_token: str
    job_arn: str | None
    input_uri: str
    output_uri: str
    records_path: str
    records: int
    status: str
    run_id: str | None


class CollectionLocked(ConfigError):
    """Another run is writing the same collection."""

    def __init__(self, message: str) -> None:
        super().__init__("qdrant.collection", message)


def _fingerprint_key(fingerprint: str | None) -> str | None:
    # "<16 hex>|<readable parameters>": the hash is what identifies the parameters.
    return fingerprint.split("|", 1)[0] if fingerprint else None


def same_fingerprint(a: str | None, b: str | None) -> bool:
    return _fingerprint_key(a) == _fingerprint_key(b)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Journal:
    """The journal file (see the module docstring). Use from one process, the driver."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "journal.sqlite"
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- lock ------------------------------------------------------------------------------------

    def acquire(self, collection: str, run_id: str, stale_after_s: float) -> None:
        """Take the collection's lock, or raise :class:`CollectionLocked` naming its holder. A lock
        whose process is gone (same host) or whose heartbeat is older than ``stale_after_s`` is
        taken over: a killed run never blocks the next one."""
        host, pid, now = socket.gethostname(), os.getpid(), time.time()
        with self._transaction(immediate=True):
            row = self.db.execute(
                "SELECT run_id, host, pid, heartbeat FROM locks WHERE collection = ?",
                (collection,),
            ).fetchone()
            if row is not None and row[0] != run_id:
                holder, h_host, h_pid, beat = row
                dead = (h_host == host and not _alive(int(h_pid))) or now - beat > stale_after_s
                if not dead:
                    raise CollectionLocked(
                        f"collection {collection!r} is being written by run {holder} "
                        f"(pid {h_pid} on {h_host}, last seen {now - beat:.0f}s ago); "
                        "wait for it to end, or stop it"
                    )
            self.db.execute(
                "INSERT OR REPLACE INTO locks VALUES (?, ?, ?, ?, ?)",
                (collection, run_id, host, pid, now),
            )

    def heartbeat(self, collection: str, run_id: str) -> None:
        self.db.execute(
            "UPDATE locks SET heartbeat = ? WHERE collection = ? AND run_id = ?",
            (time.time(), collection, run_id),
        )

    def release(self, collection: str, run_id: str) -> None:
        self.db.execute(
            "DELETE FROM locks WHERE collection = ? AND run_id = ?", (collection, run_id)
        )

    # -- fingerprints ----------------------------------------------------------------------------

    def fingerprints(self, collection: str) -> dict[str, str]:
        rows = self.db.execute(
            "SELECT modality, fingerprint FROM fingerprints WHERE collection = ?", (collection,)
        )
        return dict(rows.fetchall())

    def record_fingerprints(self, collection: str, fingerprints: dict[str, str]) -> None:
        with self._transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?)",
                [(collection, m, fp) for m, fp in fingerprints.items()],
            )

    # -- assets ----------------------------------------------------------------------------------

    def lookup(self, collection: str, asset_ids: Sequence[str]) -> dict[str, Entry]:
        """The entries of these assets (absent ones left out), queried in chunks."""
        out: dict[str, Entry] = {}
        for start in range(0, len(asset_ids), _CHUNK):
            chunk = list(asset_ids[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT asset_id, content_version, modality, fingerprint, outcome, error_code, "
                f"permanent, points FROM assets WHERE collection = ? AND asset_id IN ({marks})",
                [collection, *chunk],
            )
            for r in rows:
                out[r[0]] = Entry(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), int(r[7]))
        return out

    def record(self, collection: str, run_id: str, entries: Iterable[Entry]) -> int:
        """Write (or replace) entries in one transaction; returns how many."""
        now = time.time()
        rows = [
            (
                collection,
                e.asset_id,
                e.content_version,
                e.modality,
                e.fingerprint,
                e.outcome,
                e.error_code,
                int(e.permanent),
                e.points,
                run_id,
                now,
            )
            for e in entries
        ]
        if rows:
            with self._transaction():
                self.db.executemany(
                    "INSERT OR REPLACE INTO assets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
        return len(rows)

    def forget(self, collection: str, asset_ids: Sequence[str]) -> None:
        for start in range(0, len(asset_ids), _CHUNK):
            chunk = list(asset_ids[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            self.db.execute(
                f"DELETE FROM assets WHERE collection = ? AND asset_id IN ({marks})",
                [collection, *chunk],
            )

    def absent(self, collection: str, present: Iterable[str]) -> Iterator[list[Entry]]:
        """Entries whose asset id is not in ``present`` (e.g. the manifest), in chunks."""
        self.db.execute("DROP TABLE IF EXISTS temp.present")
        self.db.execute("CREATE TEMP TABLE present (asset_id TEXT PRIMARY KEY) WITHOUT ROWID")
        batch: list[tuple[str]] = []
        with self._transaction():
            for asset_id in present:
                batch.append((asset_id,))
                if len(batch) >= _CHUNK:
                    self.db.executemany("INSERT OR IGNORE INTO temp.present VALUES (?)", batch)
                    batch = []
            self.db.executemany("INSERT OR IGNORE INTO temp.present VALUES (?)", batch)
        cursor = self.db.execute(
            "SELECT asset_id, content_version, modality, fingerprint, outcome, error_code, "
            "permanent, points FROM assets WHERE collection = ? AND asset_id NOT IN "
            "(SELECT asset_id FROM temp.present)",
            (collection,),
        )
        while rows := cursor.fetchmany(_CHUNK):
            yield [Entry(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), int(r[7])) for r in rows]

    def entries(self, collection: str, only: Iterable[str] | None = None) -> Iterator[list[Entry]]:
        """Every entry of ``collection`` (or only those whose asset id ``only`` streams), in
        chunks, read through a connection of its own: the caller may write to the journal
        between chunks (the reader sees the journal as it was when it started)."""
        reader = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            reader.execute("BEGIN")  # one snapshot for the whole read (write-ahead log)
            where = "collection = ?"
            if only is not None:
                reader.execute(
                    "CREATE TEMP TABLE only_ids (asset_id TEXT PRIMARY KEY) WITHOUT ROWID"
                )
                batch: list[tuple[str]] = []
                for asset_id in only:
                    batch.append((asset_id,))
                    if len(batch) >= _CHUNK:
                        reader.executemany("INSERT OR IGNORE INTO temp.only_ids VALUES (?)", batch)
                        batch = []
                reader.executemany("INSERT OR IGNORE INTO temp.only_ids VALUES (?)", batch)
                where += " AND asset_id IN (SELECT asset_id FROM temp.only_ids)"
            cursor = reader.execute(
                "SELECT asset_id, content_version, modality, fingerprint, outcome, error_code, "
                f"permanent, points FROM assets WHERE {where}",
                (collection,),
            )
            while rows := cursor.fetchmany(_CHUNK):
                yield [
                    Entry(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), int(r[7])) for r in rows
                ]
            reader.execute("COMMIT")
        finally:
            reader.close()

    def count(self, collection: str, outcome: str | None = None) -> int:
        if outcome is None:
            row = self.db.execute("SELECT COUNT(*) FROM assets WHERE collection = ?", (collection,))
        else:
            row = self.db.execute(
                "SELECT COUNT(*) FROM assets WHERE collection = ? AND outcome = ?",
                (collection, outcome),
            )
        return int(row.fetchone()[0])

    # -- batch inference jobs -------------------------------------------------------------------

    # -- async invocations (segmentation.mode=service) ---------------------------------------------

    def record_invocations(
        self, collection: str, run_id: str, jobs: Sequence[Mapping[str, Any]]
    ) -> int:
        """Async jobs in flight (``token``, ``arn``, ``asset_id``, ``content_version``), recorded
        as the run goes: after a crash they are on record, and the next run, whose start of the
        same input carries the same client token, gets them back instead of paying again."""
        now = time.time()
        rows = [
            (
                collection,
                str(j["token"]),
                j.get("arn"),
                str(j["asset_id"]),
                j.get("content_version"),
                run_id,
                now,
                now,
            )
            for j in jobs
        ]
        with self._transaction():
            self.db.executemany(
                "INSERT INTO invocations VALUES (?, ?, ?, ?, ?, ?, 'in_progress', ?, ?) "
                "ON CONFLICT (collection, token) DO UPDATE SET arn = excluded.arn, "
                "updated_at = excluded.updated_at WHERE status = 'in_progress'",
                rows,
            )
        return len(rows)

    def collect_invocations(self, collection: str, asset_ids: Sequence[str]) -> None:
        """The assets' async jobs are done with (their outcome is journaled)."""
        now = time.time()
        for start in range(0, len(asset_ids), _CHUNK):
            chunk = list(asset_ids[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            self.db.execute(
                "UPDATE invocations SET status = 'collected', updated_at = ? WHERE collection = ? "
                f"AND status = 'in_progress' AND asset_id IN ({marks})",
                [now, collection, *chunk],
            )

    def invocations(self, collection: str, status: str = "in_progress") -> list[dict[str, Any]]:
        """The collection's recorded async jobs with ``status`` (a stopped run's, in flight)."""
        cursor = self.db.execute(
            "SELECT token, arn, asset_id, content_version, run_id FROM invocations "
            "WHERE collection = ? AND status = ? ORDER BY started_at",
            (collection, status),
        )
        keys = ("token", "arn", "asset_id", "content_version", "run_id")
        return [dict(zip(keys, r, strict=True)) for r in cursor.fetchall()]

    # -- batch inference jobs ----------------------------------------------------------------------

    def add_batch_job(self, job: BatchJobEntry) -> None:
        """Record a job before it is submitted (status ``staged``): a run killed between the
        submission and its answer finds it again by name or client token."""
        self.db.execute(
            "INSERT OR IGNORE INTO batch_jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.name,
                job.collection,
                job.client_token,
                job.job_arn,
                job.input_uri,
                job.output_uri,
                job.records_path,
                job.records,
                job.status,
                job.run_id,
                time.time(),
                time.time(),
            ),
        )

    def update_batch_job(self, name: str, status: str, job_arn: str | None = None) -> None:
        self.db.execute(
            "UPDATE batch_jobs SET status = ?, job_arn = COALESCE(?, job_arn), updated_at = ? "
            "WHERE name = ?",
            (status, job_arn, time.time(), name),
        )

    def open_batch_jobs(self, collection: str) -> list[BatchJobEntry]:
        """The collection's jobs not yet collected, oldest first."""
        rows = self.db.execute(
            "SELECT name, collection, client_token, job_arn, input_uri, output_uri, records_path, "
            "records, status, run_id FROM batch_jobs WHERE collection = ? AND status != "
            "'collected' ORDER BY submitted_at",
            (collection,),
        ).fetchall()
        return [BatchJobEntry(*r) for r in rows]

    def batch_job(self, name: str) -> BatchJobEntry | None:
        row = self.db.execute(
            "SELECT name, collection, client_token, job_arn, input_uri, output_uri, records_path, "
            "records, status, run_id FROM batch_jobs WHERE name = ?",
            (name,),
        ).fetchone()
        return None if row is None else BatchJobEntry(*row)

    # -- runs ------------------------------------------------------------------------------------

    def start_run(self, run_id: str, collection: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, 'running', ?, NULL, ?, ?, NULL)",
            (run_id, collection, time.time(), socket.gethostname(), os.getpid()),
        )

    def end_run(self, run_id: str, status: str, report_path: str | None) -> None:
        self.db.execute(
            "UPDATE runs SET status = ?, ended_at = ?, report = ? WHERE run_id = ?",
            (status, time.time(), report_path, run_id),
        )

    # -- plumbing --------------------------------------------------------------------------------

    class _Tx:
        def __init__(self, db: sqlite3.Connection, immediate: bool) -> None:
            self.db, self.immediate = db, immediate

        def __enter__(self) -> None:
            self.db.execute("BEGIN IMMEDIATE" if self.immediate else "BEGIN")

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def _transaction(self, immediate: bool = False) -> Journal._Tx:
        return Journal._Tx(self.db, immediate)
