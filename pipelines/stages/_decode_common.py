"""Helpers shared by the decoders: opening an asset's source and naming why it failed.

Every decoder turns a per-asset data problem (missing file, empty file, unreadable object) into a
dead-letter row with a stable code; infrastructure failures (S3 unreachable, bad credentials)
propagate and fail the job.
"""

from __future__ import annotations

from collections.abc import Mapping
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
