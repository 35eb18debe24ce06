"""Reading assets by URI: local paths, ``file://`` and ``s3://``.

Decoders ask for a *local path* rather than bytes so that PyMuPDF and PyAV can stream from disk
and memory stays bounded by the segment, not the asset. S3 objects are downloaded to a temporary
file that is removed when the context exits.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlparse


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client; ``endpoint_url`` points at a compatible endpoint (moto locally)."""
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint_url, region_name=region or os.environ.get("AWS_REGION")
    )


def local_file_path(uri: str) -> str | None:
    """The filesystem path of a local or ``file://`` URI; None for remote URIs."""
    if uri.startswith("file://"):
        return unquote(urlparse(uri).path)
    if "://" in uri:
        return None
    return uri


@contextlib.contextmanager
def open_local(uri: str, s3_endpoint_url: str | None = None) -> Iterator[str]:
    """Yield a local path holding the asset at ``uri`` (downloaded to a temp file for s3://)."""
    path = local_file_path(uri)
    if path is not None:
        yield path
        return
    if not uri.startswith("s3://"):
        raise ValueError(f"unsupported URI scheme: {uri!r}")
    bucket, key = split_s3_uri(uri)
    suffix = os.path.splitext(key)[1]
    fd, tmp = tempfile.mkstemp(prefix="asset-", suffix=suffix)
    os.close(fd)
    try:
        s3_client(s3_endpoint_url).download_file(bucket, key, tmp)
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def read_bytes(uri: str, s3_endpoint_url: str | None = None) -> bytes:
    """The whole asset as bytes (only for small assets: text files, images)."""
    with open_local(uri, s3_endpoint_url) as path, open(path, "rb") as fh:
        return fh.read()


# Local files up to this size are versioned by a hash of their content; larger ones (audio,
# video) by their mtime and size, so that versioning a media library does not read all of it.
DEFAULT_HASH_MAX_BYTES = 8 * 1024 * 1024


def local_content_version(path: str, hash_max_bytes: int = DEFAULT_HASH_MAX_BYTES) -> str:
    """``sha256:<hex>`` of a local file's content, or ``stat:<mtime_ns>-<size>`` above
    ``hash_max_bytes``. Raises OSError when the file cannot be read."""
    st = os.stat(path)
    if st.st_size > hash_max_bytes:
        return f"stat:{st.st_mtime_ns}-{st.st_size}"
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
