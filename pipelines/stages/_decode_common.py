"""Helpers shared by the decoders: opening an asset's source and naming why it failed.

Every decoder raises :class:`~pipelines.core.errors.RecordError` for a per-asset data problem
(missing file, empty file, unreadable object), with a code from :mod:`pipelines.core.codes`; the
decode stage turns it into a dead-letter row. Infrastructure failures (S3 unreachable, bad
credentials) propagate and fail the job.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from pipelines.core import codes
from pipelines.core.errors import InfrastructureError, RecordError

# Largest encoded image we put inline in a request. The whole request body may be 25 MB after
# base64 (4/3 growth); 10 MB of image leaves ample room for the JSON around it.
MAX_INLINE_IMAGE_BYTES = 10 * 1024 * 1024

STAGE = "decode"

# The per-asset limits' check of the asset being decoded (set by the decode stage around its
# decoder): called with the local path and byte size once the source is open, before the decoder
# reads it; raises RecordError when the asset is over a limit.
SOURCE_CHECK: contextvars.ContextVar[Callable[[str, int], None] | None] = contextvars.ContextVar(
    "source_check", default=None
)

_S3_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
_S3_DENIED = frozenset({"403", "AccessDenied", "Forbidden", "AllAccessDisabled"})

# Consecutive refusals of the same cause (S3 access denied, S3 server errors) after which the
# run stops as an infrastructure failure instead of dead-lettering every further asset.
BREAKER_THRESHOLD = 3


class SourceBreaker:
    """A circuit breaker on reading sources, per process: one object S3 refuses is that asset's
    problem (a dead letter, transient), but ``threshold`` refusals of the same cause in a row,
    with no successful read between them, mean the storage is down or the job lost access, and
    the run stops (:class:`InfrastructureError`, exit 3) with the assets not yet read left for
    the next run."""

    def __init__(self, threshold: int = BREAKER_THRESHOLD) -> None:
        self.threshold = threshold
        self.cause: str | None = None
        self.count = 0

    def success(self) -> None:
        self.cause, self.count = None, 0

    def failure(self, cause: str, error: RecordError, exc: BaseException) -> RecordError:
        """``error`` (the asset's dead letter), or InfrastructureError once the breaker trips."""
        self.count = self.count + 1 if cause == self.cause else 1
        self.cause = cause
        if self.count >= self.threshold:
            count, self.count = self.count, 0
            raise InfrastructureError(
                f"S3 refused {count} reads in a row ({cause}; last: {describe(exc)}): the "
                "storage is down or the job lost access"
            ) from exc
        return error


BREAKER = SourceBreaker()


def _s3_refusal(exc: BaseException, stage: str) -> tuple[str, RecordError] | None:
    """(cause, dead letter) when S3 answered this object with a refusal or a server error."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _S3_DENIED or status == 403:
        return "access denied", RecordError(
            stage, codes.SOURCE_ACCESS_DENIED, f"S3 refused the read: {describe(exc)}"
        )
    if isinstance(status, int) and status >= 500:
        return "server errors", RecordError(
            stage, codes.SOURCE_UNAVAILABLE, f"S3 failed the read: {describe(exc)}"
        )
    return None


def source_error(exc: BaseException, stage: str = STAGE) -> RecordError | None:
    """The :class:`RecordError` when ``exc`` means *this asset* cannot be read; None otherwise.

    Only for exceptions raised while *opening* the source (``open_local`` / ``read_bytes``).

    Missing or unreadable files are data errors (one asset); other failures (S3 unreachable,
    credentials) are infrastructure errors and are not mapped, so the caller re-raises them.
    """
    if isinstance(exc, FileNotFoundError):
        return RecordError(stage, codes.FILE_NOT_FOUND, f"file not found: {exc}")
    if isinstance(exc, IsADirectoryError | PermissionError | NotADirectoryError):
        return RecordError(stage, codes.FILE_UNREADABLE, f"cannot read file: {exc}")
    response: Any = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = str(response.get("Error", {}).get("Code", ""))
        if code in _S3_NOT_FOUND:
            return RecordError(stage, codes.FILE_NOT_FOUND, f"object not found: {exc}")
    if isinstance(exc, ValueError):
        # open_local raises ValueError only for a URI it cannot interpret (scheme, bucket).
        return RecordError(stage, codes.BAD_URI, str(exc))
    return None


def decoded_rows(
    asset: Mapping[str, Any], decoded: Iterable[dict[str, Any] | RecordError]
) -> Iterator[dict[str, Any]]:
    r"""A decoder's output as segment rows: where its :class:`RecordError`\ s become dead letters.

    A decoder yields segment rows, yields a ``RecordError`` for a segment that failed while the
    rest of the asset goes on, and raises one when the asset cannot be decoded (any further);
    each becomes one dead-letter row here. Other exceptions propagate (the decode stage turns them
    into ``decode_internal``).
    """
    from pipelines.core.rows import dead_letter_row

    try:
        for item in decoded:
            yield dead_letter_row(asset, item) if isinstance(item, RecordError) else item
    except RecordError as exc:
        yield dead_letter_row(asset, exc)


def describe(exc: BaseException) -> str:
    """A one-line description of an exception for a dead-letter message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


@contextlib.contextmanager
def local_source(
    asset: Mapping[str, Any], s3_endpoint_url: str | None, what: str, stage: str = STAGE
) -> Iterator[str]:
    """Yield a local path for the asset's ``uri``; raise :class:`RecordError` saying why not.

    Covers what every decoder checks first: a missing ``uri``, a source that cannot be opened
    (:func:`source_error`) and an empty file. An object S3 refuses (403) or fails (5xx) is this
    asset's dead letter, until :data:`BREAKER` sees too many in a row; other storage failures
    (unreachable after botocore's retries, credentials) stop the run at once. ``what`` names the
    asset in messages ("an image asset").
    """
    from pipelines.core.io import open_local

    uri = asset.get("uri")
    if not uri:
        raise RecordError(stage, codes.MISSING_URI, f"{what} needs a uri")
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(open_local(str(uri), s3_endpoint_url))
            size = os.path.getsize(path)
        except Exception as exc:
            mapped = source_error(exc, stage)
            refusal = _s3_refusal(exc, stage) if mapped is None else None
            if refusal is not None:
                raise BREAKER.failure(refusal[0], refusal[1], exc) from exc
            if mapped is None:
                # Not this asset's fault (S3 unreachable, access refused): the whole run would
                # fail the same way, so it stops as an infrastructure failure instead of
                # dead-lettering every row.
                raise InfrastructureError(
                    f"cannot read {str(uri)!r}: {type(exc).__name__}: {exc}"
                ) from exc
            raise mapped from exc
        BREAKER.success()
        if size == 0:
            raise RecordError(stage, codes.EMPTY_FILE, "the file has zero bytes")
        check = SOURCE_CHECK.get()
        if check is not None:
            check(path, size)
        yield path
