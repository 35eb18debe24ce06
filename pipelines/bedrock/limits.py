"""The service's size and range limits, and :class:`RequestLimits` (the configurable ones)."""

from __future__ import annotations

from dataclasses import dataclass

# The documented inline text limit, and the one the service reportedly accepts (uncertain; the
# default follows the service, a stricter deployment sets RequestLimits(inline_text_max_chars=...)).
DOCUMENTED_INLINE_TEXT_MAX_CHARS = 8_192
DEFAULT_INLINE_TEXT_MAX_CHARS = 50_000
# "25 MB after base64": decimal megabytes is the conservative reading.
MAX_BODY_BYTES = 25_000_000

TEXT_SEGMENT_MIN_CHARS = 800
TEXT_SEGMENT_MAX_CHARS = 50_000
MEDIA_SEGMENT_MIN_S = 1
MEDIA_SEGMENT_MAX_S = 30


@dataclass(frozen=True)
class RequestLimits:
    """Client-side limits checked by :meth:`EmbeddingRequest.validate` (service values differ
    between documentation and behaviour, so they are configurable)."""

    inline_text_max_chars: int = DEFAULT_INLINE_TEXT_MAX_CHARS
    max_body_bytes: int = MAX_BODY_BYTES
