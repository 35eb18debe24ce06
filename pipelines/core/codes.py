"""Every dead-letter code, in one place, with what it means.

A dead-letter row's ``error_code`` (and the ``error_code`` column of ``dead_letter.parquet``) is
always one of the constants below: snake_case, stable across releases, never message text. The
same list, with the same meanings, is in ``docs/dead-letter-codes.md`` (a test keeps the two in
step). Raise :class:`pipelines.core.errors.RecordError` with one of them to fail a record.

Bedrock's service error codes (``ThrottlingException``, ...) are wire codes: the client classifies
them (:mod:`pipelines.bedrock.errors`) and a record that fails with one is dead-lettered under
:func:`from_service_code` of it (``ValidationException`` -> ``validation_exception``).
"""

from __future__ import annotations

# -- reading the source (every decoder) -----------------------------------------------------------
MISSING_URI = "missing_uri"  # the row has no uri (and, for text, no inline text)
BAD_URI = "bad_uri"  # the uri cannot be interpreted (scheme, bucket)
FILE_NOT_FOUND = "file_not_found"  # no file or object at the uri
FILE_UNREADABLE = "file_unreadable"  # the file exists but cannot be read (directory, permissions)
EMPTY_FILE = "empty_file"  # the file has zero bytes
SOURCE_ACCESS_DENIED = "source_access_denied"  # S3 refused to read this object (403)
SOURCE_UNAVAILABLE = "source_unavailable"  # S3 failed to serve this object (5xx) after retries
INPUT_OUTSIDE_ROOTS = "input_outside_roots"  # outside inputs.allowed_roots / allowed_s3_prefixes

# -- the decode stage ------------------------------------------------------------------------------
MODALITY_UNKNOWN = "modality_unknown"  # no decoder for the row's modality
# per-asset cost limits (limits.max_*_per_asset): dead-lettered before any call for the asset
ASSET_TOO_LARGE = "asset_too_large"  # more bytes than limits.max_bytes_per_asset
ASSET_TOO_MANY_PAGES = "asset_too_many_pages"  # more pages than limits.max_pages_per_asset
ASSET_TOO_LONG = "asset_too_long"  # more media seconds than limits.max_media_seconds_per_asset
ASSET_TOO_MANY_SEGMENTS = "asset_too_many_segments"  # over limits.max_segments_per_asset
DECODE_INTERNAL = "decode_internal"  # the decoder failed unexpectedly (a bug or a library error)
NO_SEGMENTS = "no_segments"  # decoding (or the async job) produced no segments
DECODER_CRASHED = "decoder_crashed"  # the decoder's process died (a native crash, a signal)
DECODE_OUT_OF_MEMORY = "decode_out_of_memory"  # the decoder went over decode.memory_limit_mb
DECODE_TIMEOUT = "decode_timeout"  # the asset took longer than decode.timeout_s to decode

# images
IMAGE_UNSUPPORTED = "image_unsupported"  # not an image format that can be read
IMAGE_CORRUPT = "image_corrupt"  # recognised as an image but truncated or damaged
IMAGE_TOO_LARGE = "image_too_large"  # over the pixel limit, or over the inline size cap

# PDF documents
PDF_NOT_PDF = "pdf_not_pdf"  # no %PDF- header
DOCUMENT_UNSUPPORTED = "document_unsupported"  # not a page format PyMuPDF opens (PDF, XPS, ...)
PDF_ENCRYPTED = "pdf_encrypted"  # a password is needed
PDF_CORRUPT = "pdf_corrupt"  # cannot be opened or repaired, or truncated
PDF_NO_PAGES = "pdf_no_pages"  # the document has no pages
PDF_NO_TEXT = "pdf_no_text"  # text mode and no extractable text
PDF_PAGE_FAILED = "pdf_page_failed"  # one page could not be rendered or its text extracted
PDF_PAGE_TOO_LARGE = "pdf_page_too_large"  # one page cannot be rendered within the caps

# text
EMPTY_TEXT = "empty_text"  # the text is empty or only whitespace
TEXT_BINARY = "text_binary"  # NUL bytes or mostly control characters
TEXT_NOT_UTF8 = "text_not_utf8"  # neither UTF-8 (or UTF-16 with BOM) nor cp1252
TEXT_TOO_LARGE = "text_too_large"  # the text file is over the size limit

# audio and video
MEDIA_CORRUPT = "media_corrupt"  # FFmpeg cannot open, demux or decode it
MEDIA_EMPTY = "media_empty"  # the stream holds no samples or packets
MEDIA_TRUNCATED = "media_truncated"  # the file ends before what its header or plan promises
CODEC_UNSUPPORTED = "codec_unsupported"  # no decoder for the stream in this FFmpeg build
NO_AUDIO_STREAM = "no_audio_stream"  # an audio asset without an audio stream
NO_VIDEO_STREAM = "no_video_stream"  # a video asset without a video stream
NOT_A_VIDEO = "not_a_video"  # a still image opened as a one-frame video
AUDIO_ONLY_VIDEO = "audio_only_video"  # a video asset holds only audio; the use case takes none
REENCODE_REQUIRED = "reencode_required"  # video_reencode=never but the video must be re-encoded
SEGMENT_TOO_LARGE = "segment_too_large"  # an encoded video segment is over the request size cap

# -- the embed stages (embed, embed_service) --------------------------------------------------
INVALID_REQUEST = "invalid_request"  # the request was refused before the call (names the field)
DIMENSION_MISMATCH = "dimension_mismatch"  # a vector's dimension is not the one requested
MALFORMED_RESPONSE = "malformed_response"  # the service's 200 response could not be parsed
CONNECTION_ERROR = "connection_error"  # the connection failed on every attempt
READ_TIMEOUT = "read_timeout"  # the call timed out on every attempt
NO_CREDENTIALS = "no_credentials"  # no usable credentials or region (the job stops)
PARAM_VALIDATION_ERROR = "param_validation_error"  # botocore refused the call's parameters
SERVICE_ERROR = "service_error"  # the service failed with a code or status not listed here
UNSUPPORTED_MODALITY = "unsupported_modality"  # service segmentation cannot take this modality
UNSUPPORTED_FORMAT = "unsupported_format"  # service segmentation cannot take this file format
ASYNC_JOB_FAILED = "async_job_failed"  # the async job (or one embedding type of it) failed
ASYNC_JOB_TIMEOUT = "async_job_timeout"  # the async job did not finish in time
ASYNC_OUTPUT_UNREADABLE = "async_output_unreadable"  # the async job's outputs cannot be read
SEGMENT_FAILED = "segment_failed"  # the async job reports one segment failed (reason in message)
# Batch inference (bedrock.mode=batch): a record's own error keeps the service's code (above).
BATCH_JOB_FAILED = "batch_job_failed"  # the batch job ended Failed before embedding the record
BATCH_JOB_STOPPED = "batch_job_stopped"  # the batch job was stopped before embedding the record
BATCH_JOB_EXPIRED = "batch_job_expired"  # the batch job ran out of time before the record
BATCH_RECORD_MISSING = "batch_record_missing"  # the job ended without an output line for it

# Bedrock service error codes, as dead-letter codes (see SERVICE_CODES).
THROTTLING_EXCEPTION = "throttling_exception"  # throttled on every attempt
MODEL_NOT_READY_EXCEPTION = "model_not_ready_exception"  # the model was loading on every attempt
MODEL_TIMEOUT_EXCEPTION = "model_timeout_exception"  # the model timed out on every attempt
MODEL_ERROR_EXCEPTION = "model_error_exception"  # the model failed on this input
INTERNAL_SERVER_EXCEPTION = "internal_server_exception"  # the service failed on every attempt
SERVICE_UNAVAILABLE_EXCEPTION = "service_unavailable_exception"  # unavailable on every attempt
REQUEST_TIMEOUT_EXCEPTION = "request_timeout_exception"  # the service timed the request out
VALIDATION_EXCEPTION = "validation_exception"  # the service refused the request as invalid
SERVICE_QUOTA_EXCEEDED_EXCEPTION = "service_quota_exceeded_exception"  # a service quota is used up
CONFLICT_EXCEPTION = "conflict_exception"  # the request conflicts with the resource's state
RESOURCE_NOT_FOUND_EXCEPTION = "resource_not_found_exception"  # unknown model or async job
SERIALIZATION_EXCEPTION = "serialization_exception"  # the service could not read the request

# -- the write stage and the ledger ----------------------------------------------------------------
MISSING_VECTOR = "missing_vector"  # an embedded row reached the store without a vector
NON_FINITE_VECTOR = "non_finite_vector"  # the vector holds NaN or inf (service or store)
WRITE_REJECTED = "write_rejected"  # the store refused the row without saying why
INCOMPLETE = "incomplete"  # the asset neither failed nor reached the index with every segment

# Bedrock's service error codes (and the HTTP layer's aliases) -> dead-letter code.
SERVICE_CODES: dict[str, str] = {
    "ThrottlingException": THROTTLING_EXCEPTION,
    "TooManyRequestsException": THROTTLING_EXCEPTION,
    "ModelNotReadyException": MODEL_NOT_READY_EXCEPTION,
    "ModelTimeoutException": MODEL_TIMEOUT_EXCEPTION,
    "ModelErrorException": MODEL_ERROR_EXCEPTION,
    "InternalServerException": INTERNAL_SERVER_EXCEPTION,
    "InternalFailure": INTERNAL_SERVER_EXCEPTION,
    "ServiceUnavailableException": SERVICE_UNAVAILABLE_EXCEPTION,
    "ServiceUnavailable": SERVICE_UNAVAILABLE_EXCEPTION,
    "RequestTimeout": REQUEST_TIMEOUT_EXCEPTION,
    "RequestTimeoutException": REQUEST_TIMEOUT_EXCEPTION,
    "ValidationException": VALIDATION_EXCEPTION,
    "ServiceQuotaExceededException": SERVICE_QUOTA_EXCEEDED_EXCEPTION,
    "ConflictException": CONFLICT_EXCEPTION,
    "ResourceNotFoundException": RESOURCE_NOT_FOUND_EXCEPTION,
    "SerializationException": SERIALIZATION_EXCEPTION,
}


def all_codes() -> dict[str, str]:
    """Every dead-letter code: constant name -> code."""
    return {
        name: value
        for name, value in globals().items()
        if name.isupper() and isinstance(value, str) and not name.startswith("_")
    }


def from_service_code(code: str) -> str:
    """The dead-letter code of a record that failed with ``code``.

    ``code`` is a Bedrock service error code (``ValidationException``), or already one of this
    module's codes (the client's own errors: ``dimension_mismatch``, ``read_timeout``, ...).
    Anything else (an unknown service code, ``HTTP418``) is :data:`SERVICE_ERROR`; the message
    keeps the original.
    """
    if code in SERVICE_CODES:
        return SERVICE_CODES[code]
    if code in _KNOWN:
        return code
    return SERVICE_ERROR


_KNOWN = frozenset(all_codes().values())

# Failures that may not happen again: a later run embeds these assets again even when they did
# not change. Every other code is permanent for unchanged content (the file, the parameters or
# the service's verdict on them): a scheduled run skips the asset (``skipped_dead_letter``) until
# its content changes or ``retry_dead_letters=true``.
TRANSIENT: frozenset[str] = frozenset(
    {
        # A verdict on the configuration, not the content: a run with wider roots reads it.
        INPUT_OUTSIDE_ROOTS,
        DECODE_INTERNAL,
        DECODE_TIMEOUT,
        DECODE_OUT_OF_MEMORY,
        SOURCE_ACCESS_DENIED,
        SOURCE_UNAVAILABLE,
        MALFORMED_RESPONSE,
        CONNECTION_ERROR,
        READ_TIMEOUT,
        SERVICE_ERROR,
        ASYNC_JOB_TIMEOUT,
        ASYNC_OUTPUT_UNREADABLE,
        SEGMENT_FAILED,
        BATCH_JOB_FAILED,
        BATCH_JOB_STOPPED,
        BATCH_JOB_EXPIRED,
        BATCH_RECORD_MISSING,
        THROTTLING_EXCEPTION,
        MODEL_NOT_READY_EXCEPTION,
        MODEL_TIMEOUT_EXCEPTION,
        MODEL_ERROR_EXCEPTION,
        INTERNAL_SERVER_EXCEPTION,
        SERVICE_UNAVAILABLE_EXCEPTION,
        REQUEST_TIMEOUT_EXCEPTION,
        SERVICE_QUOTA_EXCEEDED_EXCEPTION,
        WRITE_REJECTED,
        INCOMPLETE,
        # A limit can be raised: the next run checks the asset again (that costs no call).
        ASSET_TOO_LARGE,
        ASSET_TOO_MANY_PAGES,
        ASSET_TOO_LONG,
        ASSET_TOO_MANY_SEGMENTS,
    }
)


def is_permanent(code: str | None) -> bool:
    """True when an unchanged asset that failed with ``code`` would fail the same way again."""
    return code is not None and code not in TRANSIENT
