"""Text chunking and the text decoder.

:func:`chunk_text` cuts a text into character spans no longer than ``max_chars``, preferring
paragraph breaks, then sentence ends, then any whitespace, and cutting hard only inside a run with
no whitespace. Consecutive spans overlap by at most ``overlap_chars`` characters (the next span
starts at the first word start at or after ``end - overlap_chars``), and every span starts after
the previous one, so the loop always progresses. Spans never start or end on whitespace, and every
non-whitespace character of the text lies in at least one span.

:func:`decode_text` turns a text asset (inline ``text`` column or a file at ``uri``) into one
segment row per chunk, with ``char_start``/``char_end`` relative to the decoded text. An HTML file
(named ``.html``/``.htm``/``.xhtml``, or starting with a doctype or ``<html>``) is embedded by its
visible text (:func:`pipelines.stages.html_text.html_text`: no markup, scripts or styles), and
the positions index that text; Markdown and every other text file are embedded as they are.

Dead-letter codes (stage ``decode``): ``missing_uri`` (neither text nor uri), ``bad_uri``,
``file_not_found``, ``file_unreadable``, ``empty_file`` (zero bytes), ``empty_text`` (only
whitespace), ``text_binary`` (NUL bytes or mostly control characters), ``text_not_utf8`` (not
UTF-8/UTF-16 with BOM, nor cleanly decodable as cp1252), ``text_too_large``.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core import codes
from pipelines.core.errors import RecordError
from pipelines.core.rows import segment_row
from pipelines.stages._decode_common import (
    describe,
    local_source,
)
from pipelines.stages.html_text import html_text, looks_like_html

STAGE = "decode"

# Larger text files are refused rather than read whole into a worker's memory (the async API's
# own limit for one text input is 634 MB; our chunks go inline, so this is about worker memory).
MAX_TEXT_BYTES = 64 * 1024 * 1024
# Bytes sniffed for binary content.
_SNIFF_BYTES = 8192
# Share of characters allowed to be undecodable (U+FFFD) in mostly-UTF-8 text before we give up.
_MAX_REPLACEMENT_SHARE = 0.001

# A sentence end: terminal punctuation, optional closing quotes/brackets, then whitespace.
_SENTENCE_END = re.compile(r"[.!?\u3002;:][\"'\u201d\u2019)\]]*(?=\s)")
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_WHITESPACE = re.compile(r"\s")


def chunk_text(text: str, max_chars: int, overlap_chars: int = 0) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` covering ``text`` in chunks of at most ``max_chars``.

    Cuts fall, in order of preference, at a paragraph break, a sentence end or any whitespace in
    the second half of the window; only a run without whitespace is cut hard at ``max_chars``.
    The next span starts at the first word start at or after ``end - overlap_chars`` (so the
    overlap is at most ``overlap_chars``, and never makes a span start before the previous one).
    Whitespace-only text gives ``[]``.

    Raises ``ValueError`` when ``max_chars < 1`` or ``overlap_chars`` is not in
    ``[0, max_chars)``.
    """
    check_chunk_sizes(max_chars, overlap_chars)
    n = len(text)
    content_end = n
    while content_end > 0 and text[content_end - 1].isspace():
        content_end -= 1
    start = _skip_space(text, 0, content_end)
    spans: list[tuple[int, int]] = []
    prev_end = start
    while start < content_end:
        if content_end - start <= max_chars:
            spans.append((start, content_end))
            break
        # Each chunk must reach past the previous one: at least to the first uncovered character.
        fresh = _skip_space(text, prev_end, content_end)
        end = _find_cut(text, start, max_chars, fresh + 1)
        spans.append((start, end))
        prev_end = end
        start = _next_start(text, start, end, overlap_chars, content_end, max_chars)
    return spans


def check_chunk_sizes(max_chars: int, overlap_chars: int) -> None:
    """A precondition of :func:`chunk_text` (ValueError): ``max_chars >= 1`` and
    ``0 <= overlap < max_chars``. A job's configuration is checked before any work by
    ``validate_segmentation``; this guards direct callers of the function."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    if not 0 <= overlap_chars < max_chars:
        raise ValueError(
            f"overlap_chars must be in [0, max_chars={max_chars}), got {overlap_chars}"
        )


def _skip_space(text: str, pos: int, limit: int) -> int:
    while pos < limit and text[pos].isspace():
        pos += 1
    return pos


def _rstrip_to(text: str, start: int, end: int) -> int:
    while end > start + 1 and text[end - 1].isspace():
        end -= 1
    return end


def _find_cut(text: str, start: int, max_chars: int, min_end: int) -> int:
    """End of the chunk starting at ``start`` (exclusive): ``min_end <= end <= start + max_chars``.

    ``text[min_end - 1]`` is not whitespace and ``min_end <= start + max_chars``.
    """
    limit = start + max_chars
    # Never cut in the first half (no tiny chunks), nor before new content.
    low = max(start + max(1, max_chars // 2), min_end)
    # The character right after the window may be the whitespace that ends a word exactly there.
    window = text[low : limit + 1]
    best: int | None = None
    for m in _PARAGRAPH.finditer(window):
        best = m.start()
    if best is None:
        for m in _SENTENCE_END.finditer(window):
            if m.end() + low <= limit:
                best = m.end()
    if best is None:
        for m in _WHITESPACE.finditer(window):
            best = m.start()
    if best is None:
        return limit  # no boundary in the second half: hard cut
    return _rstrip_to(text, start, low + best)


def _next_start(
    text: str, start: int, end: int, overlap: int, content_end: int, max_chars: int
) -> int:
    """Where the chunk after ``[start, end)`` begins: a word start within the overlap."""
    fresh = _skip_space(text, end, content_end)
    if overlap == 0:
        return fresh
    # The next chunk must be able to reach the first character not yet covered.
    earliest = max(start + 1, fresh + 1 - max_chars)
    target = max(end - overlap, earliest)
    for pos in range(target, end):
        if not text[pos].isspace() and text[pos - 1].isspace():
            return pos
    if fresh > end or (end < content_end and text[end].isspace()):
        # The cut was at whitespace and no word starts inside the overlap: no overlap.
        return fresh
    # One long word across the cut: overlap hard, at a non-space character.
    return _skip_space(text, target, fresh)


def decode_text(
    asset: Mapping[str, Any],
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
    s3_endpoint_url: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Segment rows for a text asset: one per chunk of its inline ``text`` or the file at ``uri``.

    The inline ``text`` column wins when it is not null. Files are decoded as UTF-8 (a BOM for
    UTF-8 or UTF-16 is honoured); mostly-UTF-8 text with a few bad bytes keeps them as U+FFFD;
    otherwise cp1252 is tried; anything else raises :class:`RecordError`.
    """
    del emb  # text segments carry no embedding parameters; the embed stage applies them
    text = asset.get("text")
    text = str(_load_text(asset, s3_endpoint_url) if text is None else text)
    if not text.strip():
        raise RecordError(STAGE, codes.EMPTY_TEXT, "the text is empty or only whitespace")
    spans = chunk_text(text, seg.text_max_chars, seg.text_overlap_chars)
    for i, (start, end) in enumerate(spans):
        yield segment_row(
            asset,
            segment_index=i,
            segment_count=len(spans),
            input_kind="text",
            input_text=text[start:end],
            char_start=start,
            char_end=end,
        )


def _load_text(asset: Mapping[str, Any], s3_endpoint_url: str | None) -> str:
    """The decoded text of the asset's file; raises :class:`RecordError` when it has none."""
    with local_source(asset, s3_endpoint_url, "a text asset without inline text") as path:
        size = os.path.getsize(path)
        if size > MAX_TEXT_BYTES:
            raise RecordError(
                STAGE,
                codes.TEXT_TOO_LARGE,
                f"{size} bytes is over the {MAX_TEXT_BYTES}-byte limit for text files",
            )
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise RecordError(STAGE, codes.FILE_UNREADABLE, describe(exc)) from exc
    text = decode_text_bytes(data)
    name = str(asset.get("uri") or "").lower()
    if name.endswith((".html", ".htm", ".xhtml")) or looks_like_html(text):
        text = html_text(text)
    return text


def decode_text_bytes(data: bytes) -> str:
    """Decode a text file's bytes; raises :class:`RecordError` saying why they are not text."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise _not_text(
                codes.TEXT_NOT_UTF8, f"invalid UTF-16 after a UTF-16 BOM: {exc}"
            ) from exc
    head = data[:_SNIFF_BYTES]
    if b"\x00" in head:
        raise _not_text(
            codes.TEXT_BINARY, "NUL bytes found: this looks like a binary file, not text"
        )
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    if head and controls / len(head) > 0.1:
        raise _not_text(
            codes.TEXT_BINARY, f"{controls} control bytes in the first {len(head)}: not text"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lossy = data.decode("utf-8", errors="replace")
    if lossy.count("\ufffd") <= max(1, int(len(lossy) * _MAX_REPLACEMENT_SHARE)):
        return lossy
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise _not_text(codes.TEXT_NOT_UTF8, f"neither UTF-8 nor cp1252: {exc}") from exc


def _not_text(code: str, message: str) -> RecordError:
    return RecordError(STAGE, code, message)
