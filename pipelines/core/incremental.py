"""What a run must do, given what the journal says the collection already holds.

For every manifest row the use case takes:

- its **content version**: the manifest's ``content_version``, or one computed here as the scanner
  computes it (``sha256:`` of inline text or of a local file up to 8 MiB, ``stat:`` mtime and size
  of a larger one, ``etag:`` of an S3 object);
- **unchanged** (``skipped_unchanged``): the journal holds it embedded, same version, same
  fingerprint; it is neither decoded nor sent to Bedrock. So is an asset the journal holds
  ``partial`` (``usecase.partial_assets=keep``) whose every failure was permanent: its good
  segments are in the collection, the others would fail the same way (under ``drop``, or with
  ``retry_dead_letters``, it is to do: ``drop`` holds no partial asset);
- **failed for good** (``skipped_dead_letter``): the journal holds it dead-lettered for a permanent
  reason (:func:`pipelines.core.codes.is_permanent`), same version and fingerprint, and
  ``retry_dead_letters`` is off;
- otherwise it is **to do**; when the journal holds an older version, that version's points stay
  searchable until the new one is complete (point ids carry the version), then they are removed.

The collection's fingerprints (one per modality) are recorded in the journal; a run whose
parameters would change them refuses to start (mixing vectors of different parameters in one
collection would make its search meaningless): that is a migration.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipelines.core import codes
from pipelines.core.errors import ConfigError
from pipelines.core.io import InputPolicy
from pipelines.core.journal import Entry, Journal, same_fingerprint
from pipelines.core.ledger import Settled


@dataclass
class Diff:
    """The rows to embed and what the journal let the run skip."""

    todo: pa.Table
    unchanged: list[str] = field(default_factory=list)
    dead_letter: list[str] = field(default_factory=list)
    # asset id -> the version the collection holds now (removed once the new one is complete)
    changed: dict[str, str | None] = field(default_factory=dict)


def content_versions(
    table: pa.Table, s3_endpoint_url: str | None = None, inputs: InputPolicy | None = None
) -> pa.Table:
    """``table`` with every null ``content_version`` filled by a content hash (when one can be
    had: a local file or object that cannot be read keeps null, and its decoder says why)."""
    column = table.column("content_version")
    if column.null_count == 0:
        return table
    versions = column.to_pylist()
    uris = table.column("uri").to_pylist()
    texts = table.column("text").to_pylist()
    for i, version in enumerate(versions):
        if version is None:
            versions[i] = _content_hash(uris[i], texts[i], s3_endpoint_url, inputs)
    index = table.schema.get_field_index("content_version")
    return table.set_column(index, "content_version", pa.array(versions, pa.string()))


def _content_hash(
    uri: str | None,
    text: str | None,
    s3_endpoint_url: str | None,
    inputs: InputPolicy | None = None,
) -> str | None:
    from pipelines.core.io import (
        local_content_version,
        local_file_path,
        s3_client,
        split_s3_uri,
    )

    if text is not None:
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    if not uri:
        return None
    if inputs is not None:
        try:
            uri = inputs.check(uri)  # nothing outside the allowed roots is read, even to hash it
        except ValueError:
            return None  # the decoder dead-letters it (input_outside_roots, bad_uri)
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        try:
            head = s3_client(s3_endpoint_url).head_object(Bucket=bucket, Key=key)
        except Exception:  # the decoder dead-letters a missing object with the right code
            return None
        return "etag:" + str(head.get("ETag", "")).strip('"')
    path = local_file_path(uri)
    if path is None:
        return None
    try:
        return local_content_version(path)  # as the scanner versions files
    except OSError:
        return None


def check_fingerprints(
    journal: Journal, collection: str, fingerprints: Mapping[str, str], modalities: list[str]
) -> None:
    """Refuse a run whose parameters differ from those the collection was built with."""
    held = journal.fingerprints(collection)
    for modality in modalities:
        old, new = held.get(modality), fingerprints.get(modality)
        if old is not None and new is not None and not same_fingerprint(old, new):
            raise ConfigError(
                "embedding",
                f"collection {collection.split('::')[-1]!r} holds {modality} vectors made with "
                f"other parameters ({old.split('|', 1)[-1]}) than this run's "
                f"({new.split('|', 1)[-1]}); one collection cannot mix them. Re-embed into a "
                "new collection with python -m jobs.migrate, or write to another collection "
                "(qdrant.collection=...)",
            )


def diff(
    journal: Journal,
    collection: str,
    table: pa.Table,
    fingerprints: Mapping[str, str],
    *,
    retry_dead_letters: bool = False,
    held_points: Mapping[str, int] | None = None,
    keep_partial: bool = False,
) -> Diff:
    """Split ``table`` (rows the use case takes, versions filled) by what the journal holds.

    ``held_points`` (asset id -> points in the store; verify runs) sends an asset the journal
    calls embedded (or partial) back to the to-do list when the store does not hold its points.
    ``keep_partial``: the use case keeps partial assets (``usecase.partial_assets=keep``).
    """
    rows = table.select(["asset_id", "modality", "content_version"]).to_pylist()
    entries = journal.lookup(collection, [r["asset_id"] for r in rows])
    out = Diff(todo=table)
    keep: list[bool] = []
    for row in rows:
        asset_id = row["asset_id"]
        entry = entries.get(asset_id)
        decision = _decide(
            row, entry, fingerprints.get(row["modality"]), retry_dead_letters, keep_partial
        )
        if (
            decision == "unchanged"
            and held_points is not None
            and entry is not None
            and held_points.get(asset_id, 0) != entry.points
        ):
            decision = "todo"
        if decision == "unchanged":
            out.unchanged.append(asset_id)
        elif decision == "dead_letter":
            out.dead_letter.append(asset_id)
        elif entry is not None and (
            entry.outcome != "embedded" or entry.content_version != row["content_version"]
        ):
            # The collection may hold an earlier version: removed once this one is complete.
            out.changed[asset_id] = entry.content_version
        keep.append(decision == "todo")
    out.todo = table.filter(pa.array(keep, pa.bool_())) if rows else table
    return out


def _decide(
    row: dict[str, Any],
    entry: Entry | None,
    fingerprint: str | None,
    retry_dead_letters: bool,
    keep_partial: bool,
) -> str:
    version = row["content_version"]
    if entry is None or version is None or entry.content_version != version:
        return "todo"
    if not same_fingerprint(entry.fingerprint, fingerprint):
        return "todo"
    if entry.outcome == "embedded":
        return "unchanged"
    if entry.permanent and not retry_dead_letters:
        if entry.outcome == "dead_lettered":
            return "dead_letter"
        if entry.outcome == "partial" and keep_partial:
            return "unchanged"
    return "todo"


def entries_of(settled: Iterable[Settled], fingerprints: Mapping[str, str]) -> list[Entry]:
    """Journal entries for assets whose outcome this run decided."""
    return [
        Entry(
            asset_id=s.asset_id,
            content_version=s.content_version,
            modality=s.modality,
            fingerprint=fingerprints.get(s.modality),
            outcome=s.outcome,
            error_code=s.error_code,
            permanent=codes.is_permanent(s.error_code),
            points=s.points,
        )
        for s in settled
    ]
