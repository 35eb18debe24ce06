"""Build a manifest by scanning a folder or an S3 prefix (``python -m jobs.manifest``).

Each file becomes one manifest row: ``asset_id`` (the path relative to the folder, with ``/``
separators, or the full S3 key), ``uri`` (absolute local path, or ``s3://bucket/key``),
``modality``, ``size`` (bytes), ``content_version`` and ``mtime`` (UTC). ``size`` and ``mtime`` are
not contract columns, so they travel into each point's payload as user metadata.

Modality comes from the file's **content** (magic bytes of the first 4 KiB); the extension only
breaks ties inside containers that hold either audio or video (MP4/QuickTime ``ftyp`` without an
audio brand, Matroska/WebM, Ogg without a known codec header). When content and extension disagree
the content wins (a PNG named ``x.txt`` is an image), and the summary counts such files.

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
import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipelines.core.io import s3_client, split_s3_uri
from pipelines.core.manifest import EXTENSION_MODALITY

SNIFF_BYTES = 4096
DEFAULT_HASH_MAX_BYTES = 8 * 1024 * 1024
_WORKERS = 16

# ftyp major brands of audio-only MPEG-4 files, and of still images (HEIF/AVIF).
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}

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


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower().lstrip(".")


def _is_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sniff window may cut a multi-byte character at its end.
        if exc.start < len(head) - 3:
            return False
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return controls <= len(head) // 100


def sniff_modality(head: bytes, name: str = "") -> str | None:
    """The modality of a file from its first bytes (``name``'s extension breaks container ties).

    Returns None when the content is not a type the pipeline embeds.
    """
    ext_modality = EXTENSION_MODALITY.get(_extension(name))
    if len(head) < 4:
        return "text" if _is_text(head) else None
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"%PDF-"):
        return "document"
    if head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff"):
        return "image"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image"
    if head[:4] in (b"II*\x00", b"MM\x00*"):  # TIFF
        return "image"
    if head[:4] == b"RIFF" and len(head) >= 12:
        kind = head[8:12]
        if kind == b"WEBP":
            return "image"
        if kind == b"WAVE":
            return "audio"
        if kind == b"AVI ":
            return "video"
        return None
    if head[4:8] == b"ftyp" and len(head) >= 12:
        brand = head[8:12]
        if brand in _IMAGE_BRANDS:
            return "image"
        if brand in _AUDIO_BRANDS:
            return "audio"
        # isom/mp42/qt and friends hold video or audio-only tracks: trust an audio extension.
        return "audio" if ext_modality == "audio" else "video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska / WebM
        return "audio" if ext_modality == "audio" else "video"
    if head.startswith(b"OggS"):
        window = head[:SNIFF_BYTES]
        if b"theora" in window or b"\x80theora" in window:
            return "video"
        return "audio"
    if head.startswith(b"fLaC") or head.startswith(b"ID3"):
        return "audio"
    if head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0:
        # MPEG audio frame sync (MP3) or ADTS (AAC: layer bits 00, so check the sync only).
        return "audio"
    if head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS AAC
        return "audio"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):  # MPEG-PS
        return "video"
    if head.startswith(b"FLV\x01"):
        return "video"
    if _is_text(head):
        return "text"
    # Weak signatures, only for content that is not text: BMP (DIB header size) and MPEG-TS
    # (sync byte every 188 bytes).
    dib_header_sizes = (12, 40, 52, 56, 64, 108, 124)
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in dib_header_sizes:
        return "image"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "video"
    return None


@dataclass
class ScanResult:
    """The manifest table of a scan and what it left out."""

    table: pa.Table
    skipped_unknown: list[str] = field(default_factory=list)
    skipped_hidden: int = 0
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
        if st.st_size <= hash_max_bytes:
            digest = hashlib.sha256(head)
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
            version = f"sha256:{digest.hexdigest()}"
        else:
            version = f"stat:{st.st_mtime_ns}-{st.st_size}"
    relative = os.path.relpath(path, root).replace(os.sep, "/")
    return _Entry(
        asset_id=relative,
        uri=os.path.abspath(path),
        size=st.st_size,
        mtime=dt.datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=dt.UTC),
        content_version=version,
        modality=sniff_modality(head, path),
    )


def _scan_local(
    root: str, recursive: bool, include_hidden: bool, hash_max_bytes: int
) -> tuple[list[_Entry], int]:
    if not os.path.isdir(root):
        raise FileNotFoundError(f"source folder does not exist: {root!r}")
    paths: list[str] = []
    hidden = 0
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
            if os.path.isfile(path):
                paths.append(path)
        if not recursive:
            break
    with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
        entries = list(pool.map(lambda p: _local_entry(root, p, hash_max_bytes), paths))
    return entries, hidden


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
    if source.startswith("s3://"):
        entries, hidden = _scan_s3(source, recursive, include_hidden, s3_endpoint_url)
    else:
        root = source[len("file://") :] if source.startswith("file://") else source
        if "://" in root:
            raise ValueError(f"unsupported source {source!r}: use a folder or s3://bucket/prefix")
        entries, hidden = _scan_local(root, recursive, include_hidden, hash_max_bytes)
    kept = [e for e in entries if e.modality is not None]
    skipped = [e.asset_id for e in entries if e.modality is None]
    mismatches = [
        e.asset_id
        for e in kept
        if (ext := EXTENSION_MODALITY.get(_extension(e.asset_id))) is not None and ext != e.modality
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
        extension_mismatches=mismatches,
        seconds=time.perf_counter() - t0,
    )
