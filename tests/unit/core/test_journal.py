"""The journal: entries, fingerprints, prune candidates and the collection lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.core.journal import CollectionLocked, Entry, Journal, same_fingerprint


def _entry(asset_id: str, version: str = "v1", outcome: str = "embedded") -> Entry:
    return Entry(asset_id, version, "text", "abc|dim=1024", outcome, None, False, 3)


def test_entries_survive_reopening_and_are_read_in_chunks(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.record("c", "run-1", [_entry(f"a{i}") for i in range(12_000)])
    journal.close()
    again = Journal(tmp_path)
    got = again.lookup("c", [f"a{i}" for i in range(0, 12_000, 7)] + ["missing"])
    assert len(got) == len(range(0, 12_000, 7)) and "missing" not in got
    assert got["a7"] == _entry("a7")
    assert again.lookup("other-collection", ["a7"]) == {}


def test_absent_lists_what_left_the_manifest(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.record("c", "r", [_entry(a) for a in ("a", "b", "c", "d")])
    gone = [e.asset_id for chunk in journal.absent("c", iter(["a", "c"])) for e in chunk]
    assert sorted(gone) == ["b", "d"]
    journal.forget("c", gone)
    assert journal.count("c") == 2


def test_fingerprints_compare_by_hash_not_by_readable_part() -> None:
    assert same_fingerprint("abc|dim=1024", "abc|dimension=1024")
    assert not same_fingerprint("abc|dim=1024", "abd|dim=1024")


def test_a_live_lock_is_refused_and_a_dead_one_taken_over(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.acquire("c", "run-1", stale_after_s=60)
    other = Journal(tmp_path)
    with pytest.raises(CollectionLocked, match="run-1"):
        other.acquire("c", "run-2", stale_after_s=60)
    # A lock whose process is gone (killed) does not block the next run.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    journal.db.execute("UPDATE locks SET pid = ? WHERE collection = 'c'", (int(dead.stdout),))
    other.acquire("c", "run-2", stale_after_s=60)
    # ... and neither does one whose heartbeat is old.
    other.db.execute("UPDATE locks SET heartbeat = heartbeat - 1000, host = 'elsewhere'")
    journal.acquire("c", "run-3", stale_after_s=60)
    journal.release("c", "run-3")
    other.acquire("c", "run-4", stale_after_s=60)


def test_entries_stream_through_a_reader_of_their_own(tmp_path: Path) -> None:
    from pipelines.core.journal import Entry, Journal

    journal = Journal(tmp_path)
    entries = [Entry(f"a{i}", "v1", "text", "fp", "embedded", points=1) for i in range(12)]
    journal.record("old", "r1", entries)
    copied = 0
    # Writing to the journal between chunks does not disturb the read (its own snapshot).
    for chunk in journal.entries("old"):
        copied += journal.record("new", "r2", chunk)
        journal.record("old", "r2", [Entry("late", "v1", "text", "fp", "embedded")])
    assert copied == 12 and journal.count("new") == 12
    only = [
        e.asset_id for chunk in journal.entries("old", only=iter(["a3", "a7", "zz"])) for e in chunk
    ]
    assert sorted(only) == ["a3", "a7"]
    journal.close()
