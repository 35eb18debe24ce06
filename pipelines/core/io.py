"""Reading assets by URI: local paths, ``file://`` and ``s3://``.

Decoders ask for a *local path* rather than bytes so that PyMuPDF and PyAV can stream from disk
and memory stays bounded by the segment, not the asset. S3 objects are downloaded to a temporary
file that is removed when the context exits.

A job reads only where its configuration allows (:class:`InputPolicy`): local files whose real
path (symlinks resolved) lies under an allowed root, ``s3://`` objects under an allowed prefix
when a list is given. The stages ask the policy once per asset, before anything is opened, staged
or sent (the decode stage in :func:`pipelines.stages.decode.decode_asset`, service segmentation in
:mod:`pipelines.stages.embed_service`, content versions in :mod:`pipelines.core.incremental`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from pipelines.config.schema import BackfillJobConfig


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


class InputRefused(ValueError):
    """A URI the job's :class:`InputPolicy` does not allow it to read."""


def is_under(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or lies below it (both absolute and already resolved)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class InputPolicy:
    """Where a job may read its inputs: built once in the driver, carried to the workers.

    ``base``: the folder relative local paths are resolved against (the manifest's folder; None
    for a manifest on S3: relative paths are refused). ``roots``: real paths (symlinks resolved)
    of the folders local files must lie under; empty: no local file is read. ``s3_prefixes``:
    ``(bucket, key prefix)`` pairs ``s3://`` URIs must fall in; None: any object the job's
    credentials can read.
    """

    base: str | None
    roots: tuple[str, ...]
    s3_prefixes: tuple[tuple[str, str], ...] | None = None

    @classmethod
    def for_manifest(
        cls,
        manifest: str,
        allowed_roots: Sequence[str] = (),
        allowed_s3_prefixes: Sequence[str] = (),
    ) -> InputPolicy:
        """The policy of a job reading ``manifest``: local files under ``allowed_roots`` (default:
        the manifest's own folder), objects under ``allowed_s3_prefixes`` (default: any)."""
        manifest_path = local_file_path(manifest)
        base = (
            os.path.dirname(os.path.realpath(manifest_path)) if manifest_path is not None else None
        )
        if allowed_roots:
            roots = tuple(
                os.path.realpath(os.path.expanduser(local_file_path(r) or r)) for r in allowed_roots
            )
        else:
            roots = (base,) if base is not None else ()
        prefixes: tuple[tuple[str, str], ...] | None = None
        if allowed_s3_prefixes:
            pairs = []
            for prefix in allowed_s3_prefixes:
                bucket, key = split_s3_uri(prefix)
                pairs.append((bucket, key if not key or key.endswith("/") else key + "/"))
            prefixes = tuple(pairs)
        return cls(base, roots, prefixes)

    @classmethod
    def for_job(cls, cfg: BackfillJobConfig) -> InputPolicy:
        """The policy of a backfill: ``inputs.allowed_roots`` / ``inputs.allowed_s3_prefixes``
        around ``manifest``."""
        assert cfg.manifest is not None
        return cls.for_manifest(
            cfg.manifest, cfg.inputs.allowed_roots, cfg.inputs.allowed_s3_prefixes
        )

    def check(self, uri: str) -> str:
        """Where to read ``uri`` from, or :class:`InputRefused` saying why not.

        A local path comes back absolute (a relative one joined to ``base``, not normalised, so
        that opening it follows the same links the check resolved), an ``s3://`` URI unchanged.
        URIs of other schemes come back unchanged: the opener refuses them (``bad_uri``).
        """
        if uri.startswith("s3://"):
            if self.s3_prefixes is None:
                return uri
            bucket, key = split_s3_uri(uri)
            if any(part in (".", "..") for part in key.split("/")):
                raise InputRefused(f"{uri!r} has '.' or '..' in its key")
            if any(bucket == b and key.startswith(p) for b, p in self.s3_prefixes):
                return uri
            allowed = ", ".join(f"s3://{b}/{p}" for b, p in self.s3_prefixes)
            raise InputRefused(f"{uri!r} is outside inputs.allowed_s3_prefixes ({allowed})")
        path = local_file_path(uri)
        if path is None:
            return uri
        if not os.path.isabs(path):
            if self.base is None:
                raise InputRefused(
                    f"{uri!r} is a relative path and the manifest is not in a local folder"
                )
            path = os.path.join(self.base, path)
        real = os.path.realpath(path)
        if not any(is_under(real, root) for root in self.roots):
            where = ", ".join(self.roots) if self.roots else "none configured"
            raise InputRefused(
                f"{uri!r} resolves outside the allowed roots ({where}; inputs.allowed_roots)"
            )
        return path


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
