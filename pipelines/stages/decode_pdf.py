"""Document decoder: one document asset -> segment rows (rendered pages and/or text chunks).

PDF, and the other page formats PyMuPDF opens, told apart by content
(:func:`pipelines.modalities.document.document_type`) and opened as that type: XPS/OpenXPS, EPUB,
MOBI, FictionBook (FB2), comic book archives (CBZ) and SVG. Reflowable formats (EPUB, MOBI, FB2)
are laid out on PyMuPDF's default page (A5-like, 400 x 600 pt) and their pages rendered like a
PDF's; an SVG is one page; a CBZ has one page per image. Everything below applies to them all,
except the encryption and ``%%EOF`` truncation checks, which are PDF's.

The document is opened from a local path (``open_local`` downloads ``s3://`` objects to a temp
file) and read one page at a time: memory is bounded by one rendered page, not the document.
Rows are yielded lazily; the document is closed when the generator finishes or is closed.

Modes (``seg.pdf_mode``):

- ``image``: one row per page, rendered at ``seg.pdf_dpi`` (lowered so that
  ``width * height <= seg.pdf_max_pixels``), PNG, or JPEG when the PNG would be over the inline
  cap (:data:`MAX_INLINE_IMAGE_BYTES`); ``detail_level = emb.document_detail_level``,
  ``page = segment_index + 1``, ``segment_count = page count``.
- ``text``: the *document text* (see below) cut by :func:`chunk_text`; ``char_start``/``char_end``
  index the document text and ``page`` is the page where the chunk starts.
- ``auto``: a first pass extracts every page's text (cheap, no rendering) and classifies pages: a
  page is sent as text when it has at least :data:`AUTO_MIN_TEXT_CHARS` characters of text and no
  large graphics (images covering :data:`AUTO_MAX_IMAGE_SHARE` of the page, or coloured filled
  shapes such as chart bars covering :data:`AUTO_MAX_FILL_SHARE`), otherwise as a rendered image.
  Text pages are chunked within the page (a chunk never spans pages). The list of segments, and so
  ``segment_count``, is fixed before the first row is yielded; the second pass renders the image
  pages one at a time.

The *document text* is ``"\\n\\n".join(text of page i, trailing whitespace removed)`` over all
pages (a page that fails contributes ``""``), the same string in ``text`` and ``auto`` mode, so
char positions agree between the two.

A part of a split document (:meth:`pipelines.modalities.Modality.split`: the ``part`` column)
opens the document, plans it whole (same ``segment_count``) and yields only its range of
segments (:func:`pipelines.modalities.base.part_segments`).

Every row of one document has a distinct ``segment_index`` in ``[0, segment_count)``, including
the dead-letter rows of single pages that fail (those carry ``page`` too, and the other pages go
on: the page's :class:`RecordError` is yielded, not raised). Whole-document failures raise
:class:`RecordError` (one dead-letter row, ``segment_index = -1``).

Dead-letter codes (stage ``decode``): ``missing_uri``, ``bad_uri``, ``file_not_found``,
``file_unreadable``, ``empty_file`` (zero bytes), ``pdf_not_pdf`` (a ``.pdf`` file, or one
without an extension, with no ``%PDF-`` header), ``document_unsupported`` (another file that is
none of the formats above),
``pdf_encrypted`` (a password is needed), ``pdf_corrupt`` (cannot be opened or repaired),
``pdf_no_pages``, ``pdf_no_text`` (``text`` mode and no extractable text: use ``auto``/``image``),
and per page ``pdf_page_failed`` (render or text extraction failed) and ``pdf_page_too_large``.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core import codes
from pipelines.core.errors import RecordError
from pipelines.core.rows import segment_row
from pipelines.modalities.base import part_segments
from pipelines.modalities.document import document_type
from pipelines.stages._decode_common import (
    MAX_INLINE_IMAGE_BYTES,
    describe,
    local_source,
)
from pipelines.stages._png import encode_png
from pipelines.stages.chunk_text import chunk_text

if TYPE_CHECKING:
    import pymupdf

STAGE = "decode"


class PdfMode(StrEnum):
    """``segmentation.pdf_mode``: how pages are sent."""

    IMAGE = "image"  # every page rendered
    TEXT = "text"  # the text layer, chunked
    AUTO = "auto"  # text-born pages as text, the others rendered


class PageAs(Enum):
    """What one planned output of a page is."""

    TEXT = "text"
    IMAGE = "image"
    ERROR = "error"


PDF_MODES = tuple(m.value for m in PdfMode)
PAGE_SEPARATOR = "\n\n"
# auto mode: a page is "text-born" with at least this much text and no large graphics.
AUTO_MIN_TEXT_CHARS = 200
AUTO_MAX_IMAGE_SHARE = 0.3
AUTO_MAX_FILL_SHARE = 0.1
JPEG_QUALITY = 85
# Bytes read to tell the document type (the PDF header may follow up to 1 KB of junk).
SNIFF_WINDOW = 4096
# A complete PDF ends with %%EOF (some writers append a little junk after it).
_TAIL_WINDOW = 4096


@dataclass(frozen=True)
class _Segment:
    """One planned output row: a text span of the document text, a page image, or a failure."""

    kind: PageAs
    page: int  # 0-based page number
    start: int = 0
    end: int = 0
    code: str = ""
    message: str = ""


def decode_pdf(
    asset: Mapping[str, Any],
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
    s3_endpoint_url: str | None = None,
) -> Iterator[dict[str, Any] | RecordError]:
    """Yield the segment rows of a PDF asset lazily (see the module docstring for the modes).

    The configuration was checked before any work (``validate_segmentation``). Raises
    :class:`RecordError` for a document that cannot be used; a page that fails is yielded as a
    :class:`RecordError` and the other pages go on.
    """
    with local_source(asset, s3_endpoint_url, "a document asset") as path:
        doc = _open_pdf(path, str(asset.get("uri") or ""))
        try:
            if seg.pdf_mode == PdfMode.IMAGE:
                yield from _image_mode(asset, doc, seg, emb)
            else:
                yield from _text_or_auto_mode(asset, doc, seg, emb)
        finally:
            doc.close()


def _open_pdf(path: str, name: str = "") -> pymupdf.Document:
    """The open document; raises :class:`RecordError` saying why it cannot be used.

    ``name`` (the asset's uri) only chooses the code for a file that is no document format."""
    import pymupdf

    with open(path, "rb") as fh:
        head = fh.read(SNIFF_WINDOW)
        fh.seek(max(0, os.fstat(fh.fileno()).st_size - _TAIL_WINDOW))
        tail = fh.read(_TAIL_WINDOW)
    kind = document_type(head, path)
    if kind is None:
        ext = os.path.splitext(name or path)[1].lower()
        if ext in ("", ".pdf"):
            raise _error(
                codes.PDF_NOT_PDF, "no %PDF- header in the first 1024 bytes: not a PDF file"
            )
        raise _error(
            codes.DOCUMENT_UNSUPPORTED,
            "not a document format that can be rendered (PDF, XPS, EPUB, MOBI, FB2, CBZ, SVG)",
        )
    truncated = kind == "pdf" and b"%%EOF" not in tail
    try:
        doc = pymupdf.open(path, filetype=kind)
    except Exception as exc:  # FileDataError, EmptyFileError, RuntimeError from MuPDF
        raise _error(codes.PDF_CORRUPT, f"cannot open the {kind.upper()}: {describe(exc)}") from exc
    try:
        if doc.needs_pass:
            # MuPDF has already tried the empty user password.
            error = _error(codes.PDF_ENCRYPTED, "the PDF is encrypted and needs a password")
        elif truncated and doc.is_repaired:
            # MuPDF "repairs" a cut-short file into pages with missing content that render
            # blank: embedding those would index silence. A complete file ends with %%EOF.
            error = _error(codes.PDF_CORRUPT, "the PDF is truncated (no %%EOF at the end)")
        elif doc.page_count >= 1:
            return doc
        elif doc.is_repaired:
            error = _error(codes.PDF_CORRUPT, "the PDF is damaged and no page could be recovered")
        else:
            error = _error(codes.PDF_NO_PAGES, "the PDF has no pages")
    except Exception as exc:
        error = _error(codes.PDF_CORRUPT, f"cannot read the page tree: {describe(exc)}")
    doc.close()
    raise error


def _error(code: str, message: str) -> RecordError:
    return RecordError(STAGE, code, message)


def _image_mode(
    asset: Mapping[str, Any],
    doc: pymupdf.Document,
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
) -> Iterator[dict[str, Any] | RecordError]:
    count = doc.page_count
    # A part of a split document renders its own page range (numbered in the whole document).
    for index in part_segments(asset, count):
        yield _image_row(asset, doc, index, index, count, seg, emb)


def _image_row(
    asset: Mapping[str, Any],
    doc: pymupdf.Document,
    page_no: int,
    index: int,
    count: int,
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
) -> dict[str, Any] | RecordError:
    """The row of page ``page_no`` rendered to an image, or the page's error (the others go on)."""
    try:
        data, fmt = _render_page(doc, page_no, seg)
    except RecordError as err:
        return _page_error(page_no, index, count, err.code, err.message)
    except Exception as exc:  # MuPDF errors on damaged content streams, fonts, images
        return _page_error(page_no, index, count, codes.PDF_PAGE_FAILED, describe(exc))
    return segment_row(
        asset,
        segment_index=index,
        segment_count=count,
        input_kind="image",
        input_format=fmt,
        input_bytes=data,
        detail_level=emb.document_detail_level,
        page=page_no + 1,
    )


def _page_error(page_no: int, index: int, count: int, code: str, message: str) -> RecordError:
    return RecordError(
        STAGE,
        code,
        f"page {page_no + 1}: {message}",
        segment_index=index,
        segment_count=count,
        page=page_no + 1,
    )


def page_zoom(width_pt: float, height_pt: float, dpi: float, max_pixels: int) -> float:
    """Zoom (pixels per point) for a page: ``dpi / 72``, lowered so the pixmap fits ``max_pixels``.

    Accounts for MuPDF rounding the pixmap size up to whole pixels.
    """
    if width_pt <= 0 or height_pt <= 0:
        raise _error(codes.PDF_PAGE_FAILED, f"empty page box {width_pt}x{height_pt} pt")
    zoom = dpi / 72.0
    if width_pt * zoom * height_pt * zoom > max_pixels:
        zoom = math.sqrt(max_pixels / (width_pt * height_pt))
    # ceil() of each side can push the area a little over: step down until it fits.
    while zoom > 0 and math.ceil(width_pt * zoom) * math.ceil(height_pt * zoom) > max_pixels:
        zoom *= 0.995
    if zoom <= 0 or math.ceil(width_pt * zoom) < 1 or math.ceil(height_pt * zoom) < 1:
        raise _error(codes.PDF_PAGE_TOO_LARGE, "the page cannot be rendered within the pixel cap")
    return zoom


def _render_page(doc: pymupdf.Document, page_no: int, seg: SegmentationConfig) -> tuple[bytes, str]:
    """Render one page to PNG (:func:`~pipelines.stages._png.encode_png`: lossless, a fraction of
    PyMuPDF's own encoder's CPU), or JPEG when the PNG would be too big for an inline request."""
    import pymupdf

    page = doc.load_page(page_no)
    rect = page.rect
    zoom = page_zoom(rect.width, rect.height, seg.pdf_dpi, seg.pdf_max_pixels)
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False)
    del page  # the pixmap is all we need; let MuPDF free the page's display structures
    if pix.width * pix.height > seg.pdf_max_pixels:
        raise _error(
            codes.PDF_PAGE_TOO_LARGE, f"rendered {pix.width}x{pix.height} over the pixel cap"
        )
    data = encode_png(pixmap_pixels(pix))
    if len(data) <= MAX_INLINE_IMAGE_BYTES:
        return data, "png"
    for quality in (JPEG_QUALITY, 70, 50):
        data = pix.tobytes("jpeg", jpg_quality=quality)
        if len(data) <= MAX_INLINE_IMAGE_BYTES:
            return data, "jpeg"
    raise _error(
        codes.PDF_PAGE_TOO_LARGE,
        f"{pix.width}x{pix.height} is over {MAX_INLINE_IMAGE_BYTES} bytes even as JPEG; "
        "lower segmentation.pdf_max_pixels",
    )


def pixmap_pixels(pix: pymupdf.Pixmap) -> np.ndarray:
    """A pixmap's samples as a height x width x channels array (a view: no copy)."""
    rows = np.frombuffer(pix.samples_mv, np.uint8).reshape(pix.height, pix.stride)
    return rows[:, : pix.width * pix.n].reshape(pix.height, pix.width, pix.n)


def _page_text(doc: pymupdf.Document, page_no: int) -> tuple[str, bool]:
    """(text, has large graphics) of one page. Raises on MuPDF errors."""
    page = doc.load_page(page_no)
    text: str = page.get_text("text", sort=True).rstrip()
    return text, _has_large_graphics(page)


def _has_large_graphics(page: pymupdf.Page) -> bool:
    """True when images or coloured filled shapes (charts, diagrams) cover much of the page."""
    area = abs(page.rect)
    if area <= 0:
        return False
    image_area = 0.0
    for info in page.get_image_info():
        bbox = page.rect & info["bbox"]
        image_area += 0.0 if bbox.is_empty else abs(bbox)
    if image_area / area >= AUTO_MAX_IMAGE_SHARE:
        return True
    fill_area = 0.0
    for path in page.get_cdrawings():
        fill = path.get("fill")
        if fill is None or min(fill) > 0.9:  # white backgrounds are not graphics
            continue
        rect = page.rect & path["rect"]
        fill_area += 0.0 if rect.is_empty else abs(rect)
    return fill_area / area >= AUTO_MAX_FILL_SHARE


def _text_or_auto_mode(
    asset: Mapping[str, Any],
    doc: pymupdf.Document,
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
) -> Iterator[dict[str, Any] | RecordError]:
    # Pass 1: every page's text (no rendering), so the segment list is known before yielding.
    texts: list[str] = []
    kinds: list[PageAs] = []
    errors: dict[int, str] = {}
    for page_no in range(doc.page_count):
        try:
            text, graphics = _page_text(doc, page_no)
        except Exception as exc:
            texts.append("")
            kinds.append(PageAs.ERROR)
            errors[page_no] = describe(exc)
            continue
        texts.append(text)
        if seg.pdf_mode == PdfMode.TEXT or (len(text) >= AUTO_MIN_TEXT_CHARS and not graphics):
            kinds.append(PageAs.TEXT)
        else:
            kinds.append(PageAs.IMAGE)
    starts: list[int] = []
    offset = 0
    for text in texts:
        starts.append(offset)
        offset += len(text) + len(PAGE_SEPARATOR)
    doc_text = PAGE_SEPARATOR.join(texts)

    plan: list[_Segment] = []
    if seg.pdf_mode == PdfMode.TEXT:
        if not doc_text.strip():
            if errors:
                page_no, message = next(iter(errors.items()))
                raise _error(codes.PDF_CORRUPT, f"page {page_no + 1}: {message}")
            raise _error(codes.PDF_NO_TEXT, "no extractable text (scanned?): use pdf_mode=auto")
        for start, end in chunk_text(doc_text, seg.text_max_chars, seg.text_overlap_chars):
            page_no = bisect.bisect_right(starts, start) - 1
            plan.append(_Segment(PageAs.TEXT, page_no, start, end))
        for page_no, message in errors.items():
            plan.append(
                _Segment(
                    PageAs.ERROR,
                    page_no,
                    starts[page_no],
                    code=codes.PDF_PAGE_FAILED,
                    message=message,
                )
            )
        plan.sort(key=lambda s: (s.page, s.start))
    else:
        for page_no, kind in enumerate(kinds):
            if kind is PageAs.ERROR:
                plan.append(
                    _Segment(
                        PageAs.ERROR, page_no, code=codes.PDF_PAGE_FAILED, message=errors[page_no]
                    )
                )
            elif kind is PageAs.IMAGE:
                plan.append(_Segment(PageAs.IMAGE, page_no))
            else:
                base = starts[page_no]
                for start, end in chunk_text(
                    texts[page_no], seg.text_max_chars, seg.text_overlap_chars
                ):
                    plan.append(_Segment(PageAs.TEXT, page_no, base + start, base + end))
    del texts

    # Pass 2: yield in plan order; image pages are rendered one at a time.
    count = len(plan)
    for index in part_segments(asset, count):
        item = plan[index]
        if item.kind is PageAs.TEXT:
            yield segment_row(
                asset,
                segment_index=index,
                segment_count=count,
                input_kind="text",
                input_text=doc_text[item.start : item.end],
                char_start=item.start,
                char_end=item.end,
                page=item.page + 1,
            )
        elif item.kind is PageAs.IMAGE:
            yield _image_row(asset, doc, item.page, index, count, seg, emb)
        else:
            yield _page_error(item.page, index, count, item.code, item.message)
