"""Documents: pages rendered as images, or their text layer chunked, per ``pdf_mode``.

PDF and the other page formats PyMuPDF opens: XPS/OpenXPS, EPUB, MOBI, FictionBook (FB2), comic
book archives (CBZ) and SVG. :func:`document_type` tells them apart by content (the decoder opens
the file as that type); HTML and Markdown are text, not documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelines.bedrock import tokens
from pipelines.modalities.base import (
    Extent,
    FingerprintFields,
    Modality,
    Usage,
    image_request,
    split_parts,
    text_request,
)
from pipelines.modalities.probing import xml_root, zip_names

if TYPE_CHECKING:
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.config.schema import EmbeddingConfig, SegmentationConfig

_TEXT_CHUNKING = ("text_max_chars", "text_overlap_chars")
# The PDF header may follow up to 1 KB of junk (PDF 1.7, Annex H).
PDF_HEADER_WINDOW = 1024
_IMAGE_MEMBERS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".jxr")
_XPS_MEMBERS = (".fdseq", ".fpage", ".fdoc")


def document_type(head: bytes, path: str | None = None) -> str | None:
    """The PyMuPDF file type of a document (``pdf``, ``xps``, ``epub``, ``mobi``, ``fb2``,
    ``cbz``, ``svg``) from its first bytes, and for a ZIP container from its member names when
    ``path`` is a local file; None when it is none of them."""
    if b"%PDF-" in head[:PDF_HEADER_WINDOW]:
        return "pdf"
    if head[60:68] in (b"BOOKMOBI", b"TEXtREAd"):
        return "mobi"
    root = xml_root(head)
    if root == "svg":
        return "svg"
    if root == "FictionBook":
        return "fb2"
    if not head.startswith(b"PK\x03\x04"):
        return None
    if head[30:38] == b"mimetype" and b"application/epub+zip" in head[38:80]:
        return "epub"
    names = zip_names(path) if path else None
    if names is None:
        # Only the first bytes (an S3 object): the first members' names.
        if any(marker.encode() in head for marker in (*_XPS_MEMBERS, "FixedDocSeq")):
            return "xps"
        first = head[30 : 30 + int.from_bytes(head[26:28], "little")].decode("latin-1").lower()
        return "cbz" if first.endswith(_IMAGE_MEMBERS) else None
    lowered = [n.lower() for n in names]
    if "mimetype" in lowered and any(n.endswith(".opf") for n in lowered):
        return "epub"
    if any(n.endswith(_XPS_MEMBERS) for n in lowered):
        return "xps"
    # A comic book archive: images (and perhaps a ComicInfo.xml or a note), nothing else.
    files = [n for n in lowered if not n.endswith("/")]
    pages = [n for n in files if n.endswith(_IMAGE_MEMBERS)]
    others = [n for n in files if not n.endswith((*_IMAGE_MEMBERS, ".xml", ".txt"))]
    return "cbz" if pages and not others else None


def _is_page_text(row: Mapping[str, Any]) -> bool:
    # A page is sent as text (pdf_mode text/auto) or as an image of the page.
    return row.get("input_bytes") is None and row.get("input_text") is not None


class Document(Modality):
    name = "document"
    decoder = "pipelines.stages.decode_pdf:decode_pdf"
    extensions = frozenset(("pdf", "xps", "oxps", "epub", "mobi", "azw", "fb2", "cbz", "svg"))
    # Pages are rendered: a byte of PDF is far more decoding than a byte of JPEG.
    work_per_byte = 16.0
    position_fields = ("page", "char_start", "char_end")
    embedding_fields = ("document_detail_level",)
    segmentation_keys = frozenset(
        ("mode", "pdf_mode", "pdf_dpi", "pdf_max_pixels", *_TEXT_CHUNKING)
    )

    def sniff(self, head: bytes) -> int:
        if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"%PDF-"):
            return 2
        kind = document_type(head)
        if kind is None:
            return 0
        # A PDF header after junk, or a ZIP told only by its first members: not sure.
        return 1 if kind in ("pdf", "cbz") else 2

    def identify(self, path: str, head: bytes) -> int | None:
        """2 for a ZIP whose members make it an XPS, EPUB or comic book archive; 0 for another
        ZIP (an office file, an archive: not a document PyMuPDF renders)."""
        if not head.startswith(b"PK\x03\x04"):
            return None
        return 2 if document_type(head, path) is not None else 0

    def extent(self, path: str | None, text: str | None, seg: SegmentationConfig) -> Extent:
        """The page count (one segment per page when pages are rendered as images)."""
        if path is None:
            return Extent()
        try:
            import pymupdf

            with open(path, "rb") as fh:
                kind = document_type(fh.read(4096), path)
            if kind is None:
                return Extent()
            with pymupdf.open(path, filetype=kind) as doc:
                pages = int(doc.page_count)
        except Exception:  # the decoder says what is wrong with the file
            return Extent()
        return Extent(pages=pages, segments=pages if seg.pdf_mode == "image" else None)

    def split(
        self, row: Mapping[str, Any], seg: SegmentationConfig, work: float, max_work: float
    ) -> int:
        """Page ranges, when pages are rendered as images (``pdf_mode=image``): each part opens
        the document and renders its own pages. In ``text`` and ``auto`` mode every part would
        redo the whole text pass that plans the segments, so the document is decoded whole."""
        if seg.pdf_mode != "image":
            return 1
        return split_parts(work, max_work)

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        if _is_page_text(row):
            return text_request(row, emb, purpose)
        return image_request(row, emb, emb.document_detail_level, purpose)

    def estimate_tokens(self, row: Mapping[str, Any]) -> int:
        if _is_page_text(row):
            return tokens.text_tokens(len(row.get("input_text") or ""))
        return tokens.IMAGE_TOKENS

    def usage(self, row: Mapping[str, Any]) -> Usage:
        if _is_page_text(row):
            return Usage(text_chars=len(row.get("input_text") or ""))
        return Usage(images=1)

    def fingerprint_fields(self, seg: SegmentationConfig) -> FingerprintFields:
        if seg.pdf_mode == "image":
            return self.embedding_fields, ("mode", "pdf_mode", "pdf_dpi", "pdf_max_pixels")
        # Pages may go as text: truncation and chunking change the vectors too.
        return (
            (*self.embedding_fields, "text_truncation_mode"),
            ("mode", "pdf_mode", "pdf_dpi", "pdf_max_pixels", *_TEXT_CHUNKING),
        )
