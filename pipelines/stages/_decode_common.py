"""Helpers shared by the decoders: opening an asset's source and naming why it failed.

Every decoder turns a per-asset data problem (missing file, empty file, unreadable object) into a
dead-letter row with a stable code; infrastructure failures (S3 unreachable, bad credentials)
propagate and fail the job.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

# Largest encoded image we put inline in a request. The whole request body may be 25 MB after
# base64 (4/3 growth); 10 MB of image leaves ample room for the JSON around it.
MAX_INLINE_IMAGE_BYTES = 10 * 1024 * 1024

# Codes shared by every decoder.
CODE_MISSING_URI = "missing_uri"
CODE_FILE_NOT_FOUND = "file_not_found"
CODE_FILE_UNREADABLE = "file_unreadable"
CODE_EMPTY_FILE = "empty_file"
CODE_BAD_URI = "bad_uri"

_S3_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


def source_error(exc: BaseException) -> tuple[str, str] | None:
    """(code, message) when ``exc`` means *this asset* cannot be read; None for anything else.

    Only for exceptions raised while *opening* the source (``open_local`` / ``read_bytes``).

    Missing or unreadable files are data errors (one asset); other failures (S3 unreachable,
    credentials) are infrastructure errors and are not mapped, so the caller re-raises them.
    """
    if isinstance(exc, FileNotFoundError):
        return CODE_FILE_NOT_FOUND, f"file not found: {exc}"
    if isinstance(exc, IsADirectoryError | PermissionError | NotADirectoryError):
        return CODE_FILE_UNREADABLE, f"cannot read file: {exc}"
    response: Any = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = str(response.get("Error", {}).get("Code", ""))
        if code in _S3_NOT_FOUND:
            return CODE_FILE_NOT_FOUND, f"object not found: {exc}"
    if isinstance(exc, ValueError):
        # open_local raises ValueError only for a URI it cannot interpret (scheme, bucket).
        return CODE_BAD_URI, str(exc)
    return None


def describe(exc: BaseException) -> str:
    """A one-line description of an exception for a dead-letter message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


@contextlib.contextmanager
def local_source(
    asset: Mapping[str, Any], s3_endpoint_url: str | None, stage: str, what: str
) -> Iterator[str | dict[str, Any]]:
    """Yield a local path for the asset's ``uri``, or the dead-letter row saying why not.

    Covers what every decoder checks first: a missing ``uri``, a source that cannot be opened
    (:func:`source_error`) and an empty file. Infrastructure failures propagate. ``what`` names
    the asset in messages ("an image asset").
    """
    from pipelines.core.io import open_local
    from pipelines.core.rows import dead_letter_row

    uri = asset.get("uri")
    if not uri:
        yield dead_letter_row(asset, stage, CODE_MISSING_URI, f"{what} needs a uri")
        return
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(open_local(str(uri), s3_endpoint_url))
            size = os.path.getsize(path)
        except Exception as exc:
            mapped = source_error(exc)
            if mapped is None:
                raise
            yield dead_letter_row(asset, stage, mapped[0], mapped[1])
            return
        if size == 0:
            yield dead_letter_row(asset, stage, CODE_EMPTY_FILE, "the file has zero bytes")
            return
        yield path
