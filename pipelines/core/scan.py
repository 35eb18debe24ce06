"""Build a manifest by scanning a folder or an S3 prefix (``python -m jobs.manifest``).

Each file becomes one manifest row: ``asset_id`` (the path relative to the folder, with ``/``
separators, or the full S3 key), ``uri`` (absolute local path, or ``s3://bucket/key``),
``modality``, ``size`` (bytes), ``content_version`` and ``mtime`` (UTC). ``size`` and ``mtime`` are
not contract columns, so they travel into each point's payload as user metadata.

Modality comes from the file's **content**, with the extension as a hint, never as the only
evidence (:meth:`pipelines.modalities.Registry.identify`):

- the first 4 KiB: each modality scores its own signatures (magic bytes); one signature alone
  decides;
- local files whose first bytes leave it open (a container that may hold audio or video, text
  that may be a plain-text image format such as an ASCII PPM or XPM, a ZIP, nothing recognised)
  get a deeper look by each modality: Pillow opens images, PyAV lists a container's streams
  (video when it holds a video stream, audio when it holds only audio), a ZIP's members tell XPS,
  EPUB and comic book archives apart. Text is chosen only for text that no format claims;
- S3 objects stay on the cheap path (the first 4 KiB, one ranged GET each): there the extension
  decides between audio and video for containers that may hold either. A misjudged container
  is still embedded right: the video decoder cuts a file without a video stream as audio.

When content and extension disagree the content wins (a PNG named ``x.txt`` is an image), and the
summary counts such files.

Symbolic links are followed only to files inside the folder: a link whose target lies outside it
is skipped (and counted), and linked folders are not entered, so a scan reads nothing the folder
merely points to.

Files whose type cannot be recognised (and empty files) are **skipped**, never written with a null
modality: the manifest reader would have to guess, and a later stage would fail on them. The summary
prints how many were skipped, with examples. Hidden files and folders (name starting with ``.``)
are skipped unless ``include_hidden`` is set.

``content_version`` (change detection for incremental runs):

- S3: ``etag:<ETag>`` (free with the listing);
- local files up to ``hash_max_bytes`` (default 8 MiB: texts, images, most PDFs): ``sha256:<hex>``
  of the content, which survives copies and ``touch``;
- larger local files (audio, video): ``stat:<mtime_ns>-<size>``, so a scheduled scan does not read
  whole media libraries; a copy that changes the mtime makes them look changed (re-embedded).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipelines.core.io import (
    DEFAULT_HASH_MAX_BYTES,
    is_under,
    local_content_version,
    s3_client,
    split_s3_uri,
)
from pipelines.modalities import current

SNIFF_BYTES = 4096
_WORKERS = 16

MANIFEST_SCHEMA = pa.schema(
    [
        ("asset_id", pa.string()),
        ("uri", pa.string()),
        ("modality", pa.string()),
        ("size", pa.int64()),
        ("content_version", pa.string()),
        ("mtime", pa.timestamp("us", tz="UTC")),
    ]
)


def sniff_modality(head: bytes, name: str = "") -> str | None:
    """The modality of a file from its first bytes (``name``'s extension breaks container ties).

    Each modality recognises its own signatures (:meth:`pipelines.modalities.Modality.sniff`).
    Returns None when the content is not a type the pipeline embeds.
    """
    modality = current().sniff(head, name)
    return modality.name if modality is not None else None


def identify_modality(path: str, head: bytes | None = None) -> str | None:
    """The modality of the local file at ``path``: its first bytes, then, when they leave it
    open, each modality's deeper look (:meth:`pipelines.modalities.Registry.identify`)."""
    if head is None:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    if not head:
        return None
    modality = current().identify(head, path)
    return modality.name if modality is not None else None


@dataclass
class ScanResult:
    """The manifest table of a scan and what it left out."""

    table: pa.Table
    skipped_unknown: list[str] = field(default_factory=list)
    skipped_hidden: int = 0
    # Symbolic links whose target lies outside the scanned folder (never read).
    skipped_outside: list[str] = field(default_factory=list)
    extension_mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self, examples: int = 5) -> str:
        """A human-readable summary (what ``jobs.manifest`` prints)."""
        counts = Counter(self.table.column("modality").to_pylist())
        total_bytes = sum(v or 0 for v in self.table.column("size").to_pylist())
        lines = [
            f"{self.table.num_rows} assets ({total_bytes / 1e6:.1f} MB) in {self.seconds:.1f}s: "
            + ", ".join(f"{m}={counts[m]}" for m in sorted(counts))
        ]
        if self.skipped_unknown:
            shown = ", ".join(self.skipped_unknown[:examples])
            more = " ..." if len(self.skipped_unknown) > examples else ""
            lines.append(
                f"skipped {len(self.skipped_unknown)} files with unknown type (e.g. {shown}{more})"
            )
        if self.skipped_hidden:
            lines.append(
                f"skipped {self.skipped_hidden} hidden files (include_hidden=true keeps them)"
            )
        if self.skipped_outside:
            shown = ", ".join(self.skipped_outside[:examples])
            lines.append(
                f"skipped {len(self.skipped_outside)} links to files outside the folder "
                f"(e.g. {shown})"
            )
        if self.extension_mismatches:
            shown = ", ".join(self.extension_mismatches[:examples])
            lines.append(
                f"{len(self.extension_mismatches)} files whose content disagrees with their "
                f"extension (content wins; e.g. {shown})"
            )
        return "\n".join(lines)


@dataclass
class _Entry:
    asset_id: str
    uri: str
    size: int
    mtime: dt.datetime
    content_version: str | None
    modality: str | None = None


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/") if part)


def _local_entry(root: str, path: str, hash_max_bytes: int) -> _Entry:
    st = os.stat(path)
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    version = local_content_version(path, hash_max_bytes)
    relative = os.path.relpath(path, root).replace(os.sep, "/")
    return _Entry(
        asset_id=relative,
        uri=os.path.abspath(path),
        size=st.st_size,
        mtime=dt.datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=dt.UTC),
        content_version=version,
        modality=identify_modality(path, head),
    )


def _scan_local(
    root: str, recursive: bool, include_hidden: bool, hash_max_bytes: int
) -> tuple[list[_Entry], int, list[str]]:
    if not os.path.isdir(root):
        raise FileNotFoundError(f"source folder does not exist: {root!r}")
    paths: list[str] = []
    hidden = 0
    outside: list[str] = []
    real_root = os.path.realpath(root)
    # os.walk does not descend into linked folders; a linked file is kept only when its target
    # lies inside the folder, so a scan never reads (or lists) what the folder merely points to.
    for dirpath, dirnames, filenames in os.walk(root):
        if not include_hidden:
            hidden += sum(1 for d in dirnames if d.startswith("."))
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        dirnames.sort()
        for name in sorted(filenames):
            if not include_hidden and name.startswith("."):
                hidden += 1
                continue
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and not is_under(os.path.realpath(path), real_root):
                outside.append(os.path.relpath(path, root).replace(os.sep, "/"))
                continue
            if os.path.isfile(path):
                paths.append(path)
        if not recursive:
            break
    with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
        entries = list(pool.map(lambda p: _local_entry(root, p, hash_max_bytes), paths))
    return entries, hidden, outside


def _scan_s3(
    source: str, recursive: bool, include_hidden: bool, endpoint_url: str | None
) -> tuple[list[_Entry], int]:
    bucket, prefix = split_s3_uri(source)
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # s3://bucket/data means the folder data/, not keys starting with "data"
    client = s3_client(endpoint_url)
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if not recursive:
        kwargs["Delimiter"] = "/"
    entries: list[_Entry] = []
    hidden = 0
    for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith("/"):
                continue  # folder marker
            if not include_hidden and _hidden(key[len(prefix) :]):
                hidden += 1
                continue
            entries.append(
                _Entry(
                    asset_id=key,
                    uri=f"s3://{bucket}/{key}",
                    size=int(obj["Size"]),
                    mtime=obj["LastModified"].astimezone(dt.UTC),
                    content_version=f"etag:{obj['ETag'].strip(chr(34))}",
                )
            )

    def sniff(entry: _Entry) -> None:
        if entry.size == 0:
            return
        key = entry.uri[len(f"s3://{bucket}/") :]
        resp = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{SNIFF_BYTES - 1}")
        entry.modality = sniff_modality(resp["Body"].read(), key)

    with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
        list(pool.map(sniff, entries))
    return entries, hidden


def scan_source(
    source: str,
    s3_endpoint_url: str | None = None,
    recursive: bool = True,
    include_hidden: bool = False,
    hash_max_bytes: int = DEFAULT_HASH_MAX_BYTES,
) -> ScanResult:
    """Scan a local folder (path or ``file://``) or ``s3://bucket/prefix`` into a manifest table."""
    t0 = time.perf_counter()
    outside: list[str] = []
    if source.startswith("s3://"):
        entries, hidden = _scan_s3(source, recursive, include_hidden, s3_endpoint_url)
    else:
        root = source[len("file://") :] if source.startswith("file://") else source
        if "://" in root:
            raise ValueError(f"unsupported source {source!r}: use a folder or s3://bucket/prefix")
        entries, hidden, outside = _scan_local(root, recursive, include_hidden, hash_max_bytes)
    registry = current()
    kept = [e for e in entries if e.modality is not None]
    skipped = [e.asset_id for e in entries if e.modality is None]
    mismatches = [
        e.asset_id
        for e in kept
        if (ext := registry.for_path(e.asset_id)) is not None and ext.name != e.modality
    ]
    table = pa.Table.from_pylist(
        [
            {
                "asset_id": e.asset_id,
                "uri": e.uri,
                "modality": e.modality,
                "size": e.size,
                "content_version": e.content_version,
                "mtime": e.mtime,
            }
            for e in kept
        ],
        schema=MANIFEST_SCHEMA,
    )
    return ScanResult(
        table=table,
        skipped_unknown=skipped,
        skipped_hidden=hidden,
        skipped_outside=outside,
        extension_mismatches=mismatches,
        seconds=time.perf_counter() - t0,
    )
