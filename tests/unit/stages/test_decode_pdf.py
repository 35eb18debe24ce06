"""decode_pdf on generated documents: image, text and auto modes, and every broken input."""

from __future__ import annotations

import base64
import io
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

import pymupdf
import pytest
from PIL import Image

from nova_devkit.media import (
    TOPICS,
    article_topic,
    make_encrypted_pdf,
    make_pdf,
    make_truncated_file,
    make_zero_page_pdf,
)
from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.config.validate import validate_segmentation
from pipelines.core.errors import ConfigError
from pipelines.core.rows import SEGMENT_COLUMNS
from pipelines.stages import decode_pdf as decode_pdf_module
from pipelines.stages._decode_common import decoded_rows
from pipelines.stages.decode_pdf import PAGE_SEPARATOR, decode_pdf, page_zoom

EMB = EmbeddingConfig()
API_IMAGE_FORMATS = {"png": "PNG", "jpeg": "JPEG"}
SEED = 11


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four pages: text, text + table, chart + a little text, scanned (image only)."""
    d = tmp_path_factory.mktemp("pdf")
    report = make_pdf(d / "report.pdf", pages=4, seed=SEED, scanned_pages=[3])
    return {
        "report": report,
        "scanned": make_pdf(d / "scanned.pdf", pages=2, seed=SEED, scanned_pages=[0, 1]),
        "encrypted": make_encrypted_pdf(d / "locked.pdf"),
        "truncated": make_truncated_file(report, d / "cut.pdf", 0.7),
        "zero_pages": make_zero_page_pdf(d / "zero.pdf"),
    }


def _rows(path: Path | str | None, **seg: Any) -> list[dict[str, Any]]:
    asset = {"asset_id": "doc", "uri": None if path is None else str(path), "modality": "document"}
    rows = list(decoded_rows(asset, decode_pdf(asset, SegmentationConfig(**seg), EMB)))
    for row in rows:
        assert set(row) == set(SEGMENT_COLUMNS)
        assert row["asset_id"] == "doc" and row["modality"] == "document"
    return rows


def _document_text(path: Path) -> str:
    """The document text as decode_pdf defines it (module docstring)."""
    with pymupdf.open(path) as doc:
        return PAGE_SEPARATOR.join(p.get_text("text", sort=True).rstrip() for p in doc)


def _image(row: dict[str, Any]) -> Image.Image:
    im = Image.open(io.BytesIO(row["input_bytes"]))
    assert im.format == API_IMAGE_FORMATS[row["input_format"]]
    im.load()
    return im


def _assert_indices(rows: list[dict[str, Any]]) -> None:
    assert [r["segment_index"] for r in rows] == list(range(len(rows)))
    assert {r["segment_count"] for r in rows} == {len(rows)}


# --- image mode ----------------------------------------------------------------------------------


def test_image_mode_renders_every_page(media: dict[str, Path]) -> None:
    rows = _rows(media["report"], pdf_mode="image", pdf_dpi=100)
    assert len(rows) == 4
    _assert_indices(rows)
    for i, row in enumerate(rows):
        assert row["error_code"] is None
        assert (row["page"], row["input_kind"]) == (i + 1, "image")
        assert row["detail_level"] == EMB.document_detail_level
        assert row["input_format"] == "png"
        assert len(base64.b64encode(row["input_bytes"])) < 25 * 1024 * 1024
        im = _image(row)
        # A4 at 100 dpi.
        assert im.size == (pytest.approx(827, abs=2), pytest.approx(1170, abs=2))
        assert im.mode == "RGB"


def test_pixel_cap_lowers_the_resolution(media: dict[str, Path]) -> None:
    rows = _rows(media["report"], pdf_mode="image", pdf_dpi=300, pdf_max_pixels=250_000)
    for row in rows:
        w, h = _image(row).size
        assert w * h <= 250_000
        assert w * h > 0.97 * 250_000  # as large as the cap allows
        assert h / w == pytest.approx(842 / 595, rel=0.01)


def test_page_zoom_fits_awkward_pages() -> None:
    for w, h, cap in [(14400, 14400, 4_000_000), (595, 842, 1000), (3, 9000, 50_000)]:
        z = page_zoom(w, h, 150, cap)
        assert -(-w * z // 1) * -(-h * z // 1) <= cap


def test_rows_are_lazy(media: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[int] = []
    real = decode_pdf_module._render_page

    def counting(doc: Any, page_no: int, seg: SegmentationConfig) -> tuple[bytes, str]:
        rendered.append(page_no)
        return real(doc, page_no, seg)

    monkeypatch.setattr(decode_pdf_module, "_render_page", counting)
    gen = cast(
        Generator[dict[str, Any], None, None],
        decode_pdf({"asset_id": "doc", "uri": str(media["report"])}, SegmentationConfig(), EMB),
    )
    first = next(gen)
    assert first["page"] == 1 and rendered == [0]
    gen.close()  # closing early closes the document


def test_jpeg_fallback_when_png_is_too_big(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    doc = pymupdf.open()
    page = doc.new_page(width=300, height=300)
    page.insert_image(page.rect, stream=buf.getvalue())
    doc.save(tmp_path / "photo.pdf")
    doc.close()
    seg = {"pdf_mode": "image", "pdf_dpi": 72}
    (png,) = _rows(tmp_path / "photo.pdf", **seg)
    assert png["input_format"] == "png"
    monkeypatch.setattr(decode_pdf_module, "MAX_INLINE_IMAGE_BYTES", len(png["input_bytes"]) - 1)
    (jpeg,) = _rows(tmp_path / "photo.pdf", **seg)
    assert jpeg["input_format"] == "jpeg"
    assert _image(jpeg).size == _image(png).size
    monkeypatch.setattr(decode_pdf_module, "MAX_INLINE_IMAGE_BYTES", 1000)
    (too_big,) = _rows(tmp_path / "photo.pdf", **seg)
    assert (too_big["error_code"], too_big["page"], too_big["segment_index"]) == (
        "pdf_page_too_large",
        1,
        0,
    )


def test_a_failing_page_is_a_dead_letter_and_the_rest_go_on(
    media: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = decode_pdf_module._render_page

    def flaky(doc: Any, page_no: int, seg: SegmentationConfig) -> tuple[bytes, str]:
        if page_no == 1:
            raise RuntimeError("code=2: cannot render: broken content stream")
        return real(doc, page_no, seg)

    monkeypatch.setattr(decode_pdf_module, "_render_page", flaky)
    rows = _rows(media["report"], pdf_mode="image", pdf_dpi=50)
    _assert_indices(rows)
    assert [r["error_code"] for r in rows] == [None, "pdf_page_failed", None, None]
    bad = rows[1]
    assert (bad["page"], bad["error_stage"], bad["input_bytes"]) == (2, "decode", None)
    assert "page 2" in bad["error_message"] and "RuntimeError" in bad["error_message"]


# --- text mode -----------------------------------------------------------------------------------


def test_text_mode_chunks_the_document_text(media: dict[str, Path]) -> None:
    doc_text = _document_text(media["report"])
    rows = _rows(media["report"], pdf_mode="text", text_max_chars=400, text_overlap_chars=60)
    assert len(rows) > 5
    _assert_indices(rows)
    starts = [0]
    with pymupdf.open(media["report"]) as doc:
        for p in doc:
            starts.append(starts[-1] + len(p.get_text(sort=True).rstrip()) + len(PAGE_SEPARATOR))
    for row in rows:
        assert row["error_code"] is None and row["input_kind"] == "text"
        assert row["input_bytes"] is None
        assert row["input_text"] == doc_text[row["char_start"] : row["char_end"]]
        assert len(row["input_text"]) <= 400
        page = row["page"]
        assert starts[page - 1] <= row["char_start"] < starts[page]
    assert rows[-1]["page"] == 3  # the scanned 4th page has no text
    # Every page's topic is findable in the chunks of that page.
    for page in (1, 2, 3):
        text = " ".join(r["input_text"] for r in rows if r["page"] == page)
        vocab = TOPICS[article_topic(SEED + page - 1)][1]
        assert sum(w in text for w in vocab) >= 3


def test_text_mode_on_a_scanned_document_is_a_dead_letter(media: dict[str, Path]) -> None:
    rows = _rows(media["scanned"], pdf_mode="text")
    assert [r["error_code"] for r in rows] == ["pdf_no_text"]


# --- auto mode -----------------------------------------------------------------------------------


def test_auto_mode_picks_text_or_image_per_page(media: dict[str, Path]) -> None:
    rows = _rows(media["report"], pdf_mode="auto", pdf_dpi=50)
    _assert_indices(rows)
    kinds: dict[int, set[str]] = {}
    for row in rows:
        kinds.setdefault(row["page"], set()).add(row["input_kind"])
    # Text pages (incl. the table page) as text; the chart page and the scanned page as images.
    assert kinds == {1: {"text"}, 2: {"text"}, 3: {"image"}, 4: {"image"}}
    doc_text = _document_text(media["report"])
    for row in rows:
        if row["input_kind"] == "text":
            assert row["input_text"] == doc_text[row["char_start"] : row["char_end"]]
            assert row["input_format"] is None and row["detail_level"] is None
        else:
            assert row["char_start"] is None
            assert row["detail_level"] == EMB.document_detail_level
            _image(row)


def test_auto_mode_chunks_long_pages_without_crossing_pages(media: dict[str, Path]) -> None:
    rows = _rows(
        media["report"], pdf_mode="auto", pdf_dpi=50, text_max_chars=300, text_overlap_chars=30
    )
    _assert_indices(rows)
    pages = [r["page"] for r in rows]
    assert pages == sorted(pages)
    assert pages.count(1) > 1 and pages.count(3) == 1 and pages.count(4) == 1


# --- broken documents ----------------------------------------------------------------------------


def test_broken_documents_are_single_dead_letters(tmp_path: Path, media: dict[str, Path]) -> None:
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    not_pdf = tmp_path / "image.pdf"
    Image.new("RGB", (10, 10)).save(not_pdf, format="PNG")
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n")
    cases = {
        "encrypted": (media["encrypted"], "pdf_encrypted"),
        "truncated": (media["truncated"], "pdf_corrupt"),
        "zero_pages": (media["zero_pages"], "pdf_no_pages"),
        "empty": (empty, "empty_file"),
        "not_pdf": (not_pdf, "pdf_not_pdf"),
        "garbage": (garbage, "pdf_corrupt"),
        "missing": (tmp_path / "missing.pdf", "file_not_found"),
        "no_uri": (None, "missing_uri"),
    }
    for mode in ("image", "text", "auto"):
        for name, (path, code) in cases.items():
            rows = _rows(path, pdf_mode=mode)
            assert [r["error_code"] for r in rows] == [code], (mode, name)
            row = rows[0]
            assert row["error_stage"] == "decode"
            assert (row["segment_index"], row["segment_count"]) == (-1, 0)
            assert row["input_bytes"] is None and row["input_text"] is None


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95])
def test_truncation_anywhere_is_corrupt(
    tmp_path: Path, media: dict[str, Path], fraction: float
) -> None:
    cut = make_truncated_file(media["report"], tmp_path / "cut.pdf", fraction)
    assert [r["error_code"] for r in _rows(cut)] == ["pdf_corrupt"]


def test_unknown_mode_is_a_config_error() -> None:
    # One place checks configuration, before any work; the decoder trusts it.
    with pytest.raises(ConfigError, match="pdf_mode"):
        validate_segmentation(SegmentationConfig(pdf_mode="ocr"))
    with pytest.raises(ConfigError, match="text_overlap_chars"):
        validate_segmentation(SegmentationConfig(text_max_chars=300, text_overlap_chars=600))


def test_other_zip_files_are_document_unsupported(tmp_path: Path) -> None:
    import zipfile

    docx = tmp_path / "report.docx"
    with zipfile.ZipFile(docx, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<w:document/>")
    assert [r["error_code"] for r in _rows(docx)] == ["document_unsupported"]
    renamed = tmp_path / "report.pdf"
    renamed.write_bytes(docx.read_bytes())
    assert [r["error_code"] for r in _rows(renamed)] == ["pdf_not_pdf"]


def test_svg_is_one_rendered_page(tmp_path: Path) -> None:
    svg = tmp_path / "drawing.svg"
    svg.write_text(
        '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="200" '
        'height="100"><rect width="200" height="100" fill="#3366cc"/></svg>\n'
    )
    [row] = _rows(svg, pdf_mode="image")
    assert row["error_code"] is None and row["page"] == 1 and row["input_format"] == "png"


@pytest.mark.parametrize("mode", ["image", "auto"])
@pytest.mark.parametrize("parts", [2, 3, 6])
def test_parts_of_a_split_document_yield_its_segments_once_numbered_in_the_whole(
    media: dict[str, Path], mode: str, parts: int
) -> None:
    """Each part plans the whole document (same segment_count) and yields its own range; a part
    with no segment of its own yields nothing (no no_segments dead letter)."""
    from pipelines.stages.decode import decode_asset

    def rows(part: str | None) -> list[dict[str, Any]]:
        asset = {
            "asset_id": "doc",
            "uri": str(media["report"]),
            "modality": "document",
            "content_version": None,
            "metadata": None,
            "label": None,
            "payload": None,
            "text": None,
            "part": part,
        }
        return list(decode_asset(asset, SegmentationConfig(pdf_mode=mode), EMB))

    whole = rows(None)
    split = [r for k in range(parts) for r in rows(f"{k}/{parts}")]
    assert all(r["error_code"] is None for r in whole + split)
    assert {r["segment_count"] for r in split} == {len(whole)}
    key = ("segment_index", "page", "input_kind", "input_bytes", "input_text")
    assert [tuple(r[k] for k in key) for r in split] == [tuple(r[k] for k in key) for r in whole]
