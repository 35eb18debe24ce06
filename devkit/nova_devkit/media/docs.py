"""Realistic test and demo media, generated at run time and deterministic by seed.

Nothing here is committed as a binary: tests and the demo call these functions into a temporary
folder. Heavy imports (PyMuPDF, Pillow, NumPy) happen inside the functions.

- :func:`make_article`: a text article on one of :data:`TOPICS`, with that topic's vocabulary,
  so that retrieval by topic words works.
- :func:`make_pdf`: a multi-page PDF with headings, paragraphs, a table and a bar chart drawn with
  PyMuPDF primitives, and optionally image-only ("scanned") pages with no text layer.
- :func:`make_encrypted_pdf`, :func:`make_zero_page_pdf`, :func:`make_truncated_file`: broken
  inputs.
- :func:`make_product_photo`, :func:`make_near_duplicate`: synthetic product photos, and a
  resized, cropped, brighter, re-encoded copy of one.
- :func:`make_exif_rotated_jpeg`: a JPEG stored sideways with an EXIF orientation tag.
- :func:`make_bomb_png`: a tiny PNG whose header claims a huge size.
"""

from __future__ import annotations

import os
import random
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pymupdf

PathLike = str | os.PathLike[str]


def _words(text: str) -> list[str]:
    return text.split()


# topic name -> (title words, vocabulary). Vocabularies do not overlap, so a query made of one
# topic's words retrieves that topic's articles.
TOPICS: dict[str, tuple[str, list[str]]] = {
    "astronomy": (
        "Notes from the Observatory",
        _words(
            "telescope galaxy nebula orbit comet asteroid supernova spectrograph exoplanet "
            "constellation eclipse pulsar redshift meteor quasar planetarium aurora satellite "
            "cosmology starlight",
        ),
    ),
    "cooking": (
        "A Kitchen Journal",
        _words(
            "saucepan simmer garlic oregano braise dough knead oven skillet vinaigrette basil "
            "marinade caramelize broth pastry whisk saffron risotto roast cinnamon",
        ),
    ),
    "finance": (
        "Quarterly Market Review",
        _words(
            "dividend equity bond portfolio inflation liquidity hedge yield treasury mortgage "
            "brokerage valuation derivative audit ledger revenue solvency arbitrage pension "
            "collateral",
        ),
    ),
    "gardening": (
        "The Allotment Diary",
        _words(
            "compost seedling mulch trowel perennial pruning tulip greenhouse fertilizer hedge-row "
            "orchard irrigation aphid rhizome topsoil hydrangea marigold trellis germination "
            "harvest",
        ),
    ),
    "sailing": (
        "Log of a Coastal Passage",
        _words(
            "mainsail jib rudder keel anchor harbour starboard port-tack spinnaker mooring tide "
            "buoy halyard regatta catamaran lighthouse nautical bowline dinghy gale",
        ),
    ),
    "medicine": (
        "Clinical Practice Update",
        _words(
            "diagnosis vaccine antibody cardiology insulin surgery radiology stethoscope dosage "
            "pathogen immunology biopsy anesthesia clinic prescription symptom therapy neurology "
            "oncology pharmacist",
        ),
    ),
    "railways": (
        "Timetables and Tracks",
        _words(
            "locomotive timetable signal platform carriage freight junction sleeper gauge "
            "conductor viaduct tunnel diesel electrification depot shunting railcar turnout "
            "commuter siding",
        ),
    ),
    "music": (
        "Rehearsal Room Notes",
        _words(
            "symphony violin orchestra melody tempo chord rhythm cello conductor-baton sonata "
            "harmony percussion soprano rehearsal crescendo overture clarinet piano concerto "
            "fugue",
        ),
    ),
}
TOPIC_NAMES = tuple(TOPICS)

_FILLER = (
    "the team noted that {a} and {b} were discussed at length",
    "in practice {a} depends on {b} more than most people expect",
    "a short review of {a} shows why {b} matters",
    "several readers asked how {a} relates to {b}",
    "we measured {a} against {b} over the whole season",
    "the guide explains {a}, then {b}, then {c}",
    "nobody expected {a} to change the way we think about {b}",
    "the last chapter compares {a} with {b} and {c}",
)


def article_topic(seed: int) -> str:
    """The topic of the article :func:`make_article` makes for ``seed``."""
    return TOPIC_NAMES[seed % len(TOPIC_NAMES)]


def make_article(seed: int, paragraphs: int = 5, sentences: int = 5) -> str:
    """A text article on topic :func:`article_topic(seed) <article_topic>`, deterministic by seed.

    A title line, then ``paragraphs`` paragraphs separated by blank lines, each of ``sentences``
    sentences that use the topic's vocabulary.
    """
    topic = article_topic(seed)
    title, vocab = TOPICS[topic]
    rng = random.Random(f"article-{seed}")
    lines = [f"{title} #{seed}: {topic}", ""]
    for _ in range(paragraphs):
        para = []
        for _ in range(sentences):
            a, b, c = rng.sample(vocab, 3)
            sentence = rng.choice(_FILLER).format(a=a, b=b, c=c)
            para.append(sentence[0].upper() + sentence[1:] + ".")
        lines.append(" ".join(para))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --- PDFs ---------------------------------------------------------------------------------------

_A4 = (595.0, 842.0)
_BAR_COLOURS = [(0.2, 0.4, 0.8), (0.9, 0.5, 0.1), (0.2, 0.7, 0.3), (0.8, 0.2, 0.3), (0.5, 0.3, 0.7)]


def _draw_table(page: pymupdf.Page, top: float, rng: random.Random, vocab: list[str]) -> float:
    """A 4-column table with a header row; returns the y below it."""
    import pymupdf

    cols, rows, left, width, row_h = 4, 6, 60.0, 475.0, 22.0
    col_w = width / cols
    header = ["Item", "Region", "Q1", "Q2"]
    page.draw_rect(pymupdf.Rect(left, top, left + width, top + row_h), color=None, fill=(0.85,) * 3)
    for r in range(rows + 1):
        y = top + r * row_h
        page.draw_line((left, y), (left + width, y), color=(0, 0, 0), width=0.6)
    for c in range(cols + 1):
        x = left + c * col_w
        page.draw_line((x, top), (x, top + rows * row_h), color=(0, 0, 0), width=0.6)
    for r in range(rows):
        for c in range(cols):
            if r == 0:
                cell = header[c]
            elif c < 2:
                cell = rng.choice(vocab)
            else:
                cell = f"{rng.randint(10, 999)}.{rng.randint(0, 9)}"
            page.insert_text((left + c * col_w + 5, top + r * row_h + 15), cell, fontsize=9)
    return top + rows * row_h + 20


def _draw_bar_chart(page: pymupdf.Page, top: float, rng: random.Random, title: str) -> float:
    """A bar chart (axes, five coloured bars, labels); returns the y below it."""
    import pymupdf

    left, width, height = 80.0, 430.0, 320.0
    bottom = top + height
    page.insert_text((left, top - 8), title, fontsize=11)
    page.draw_line((left, top), (left, bottom), color=(0, 0, 0), width=1)
    page.draw_line((left, bottom), (left + width, bottom), color=(0, 0, 0), width=1)
    bar_w = width / 5 - 16
    for i, colour in enumerate(_BAR_COLOURS):
        h = rng.uniform(0.45, 0.95) * (height - 10)
        x = left + 10 + i * (bar_w + 16)
        page.draw_rect(pymupdf.Rect(x, bottom - h, x + bar_w, bottom), color=None, fill=colour)
        page.insert_text((x + 4, bottom + 14), f"S{i + 1}", fontsize=9)
    return bottom + 30


def _fill_page(page: pymupdf.Page, seed: int, page_no: int, table: bool, chart: bool) -> None:
    import pymupdf

    topic = article_topic(seed + page_no)
    title, vocab = TOPICS[topic]
    rng = random.Random(f"pdf-{seed}-{page_no}")
    page.insert_text((60, 70), f"{page_no + 1}. {title}", fontsize=16)
    y = 90.0
    if table:
        y = _draw_table(page, y + 10, rng, vocab)
    if chart:
        y = _draw_bar_chart(page, y + 20, rng, f"Figure {page_no + 1}: {topic} by series")
    body = make_article(seed + page_no, paragraphs=2 if chart else 4, sentences=4)
    body = body.split("\n", 2)[2]  # drop the article's own title line
    page.insert_textbox(pymupdf.Rect(60, y + 10, 535, 800), body, fontsize=10)


def _build_pdf(
    pages: int, seed: int, scanned_pages: Iterable[int], table_every: int, chart_every: int
) -> pymupdf.Document:
    import pymupdf

    scanned = set(scanned_pages)
    doc = pymupdf.open()
    for page_no in range(pages):
        table = table_every > 0 and page_no % table_every == 1 % table_every
        chart = chart_every > 0 and page_no % chart_every == 2 % chart_every
        if page_no in scanned:
            # Lay the page out in a scratch document, then keep only a greyscale raster of it.
            scratch = pymupdf.open()
            _fill_page(scratch.new_page(width=_A4[0], height=_A4[1]), seed, page_no, table, chart)
            pix = scratch[0].get_pixmap(dpi=72, colorspace=pymupdf.csGRAY)
            scratch.close()
            page = doc.new_page(width=_A4[0], height=_A4[1])
            page.insert_image(page.rect, stream=pix.tobytes("png"))
        else:
            page = doc.new_page(width=_A4[0], height=_A4[1])
            _fill_page(page, seed, page_no, table, chart)
    doc.set_metadata({"title": f"Generated report {seed}", "author": "nova_devkit.media"})
    return doc


def make_pdf(
    path: PathLike,
    pages: int = 3,
    seed: int = 0,
    scanned_pages: Iterable[int] = (),
    table_every: int = 3,
    chart_every: int = 3,
) -> Path:
    """Write an A4 PDF of ``pages`` pages and return its path.

    Page ``i`` (0-based) has a heading and paragraphs on topic ``article_topic(seed + i)``; pages
    with ``i % table_every == 1`` get a table and pages with ``i % chart_every == 2`` a bar chart
    (filled rectangles, about 14% of the page). Pages listed in ``scanned_pages`` are image-only:
    the same layout rasterised in grey, with no text layer. ``0`` disables tables or charts.
    """
    doc = _build_pdf(pages, seed, scanned_pages, table_every, chart_every)
    out = Path(path)
    doc.save(out, garbage=3, deflate=True)
    doc.close()
    return out


def make_encrypted_pdf(
    path: PathLike, pages: int = 2, seed: int = 0, password: str = "secret"
) -> Path:
    """Write an AES-256 encrypted PDF that needs the user password ``password`` to open."""
    import pymupdf

    doc = _build_pdf(pages, seed, (), 3, 3)
    out = Path(path)
    doc.save(
        out,
        encryption=pymupdf.mupdf.PDF_ENCRYPT_AES_256,
        user_pw=password,
        owner_pw=password + "-owner",
    )
    doc.close()
    return out


def make_zero_page_pdf(path: PathLike) -> Path:
    """Write a well-formed PDF (header, xref, trailer, %%EOF) whose page tree has no pages.

    PyMuPDF refuses to save a document without pages, so the bytes are written by hand.
    """
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    target = Path(path)
    target.write_bytes(bytes(out))
    return target


def make_truncated_file(src: PathLike, dst: PathLike, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst`` (a download cut short)."""
    data = Path(src).read_bytes()
    out = Path(dst)
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


# --- Images -------------------------------------------------------------------------------------


def _format_for(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt.upper().replace("JPG", "JPEG")
    ext = path.suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}.get(
        ext, ext.upper() or "PNG"
    )


def make_product_photo(
    path: PathLike, seed: int = 0, size: tuple[int, int] = (640, 480), fmt: str | None = None
) -> Path:
    """A synthetic product photo: 1-3 shaded objects on a gradient background, noise, shadow.

    Colours, shapes and placement differ by ``seed``; ``fmt`` defaults to the file suffix.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    out = Path(path)
    rng = random.Random(f"photo-{seed}")
    nprng = np.random.default_rng(seed)
    w, h = size
    top = np.array([rng.randint(150, 255) for _ in range(3)], dtype=np.float32)
    bottom = np.array([rng.randint(40, 200) for _ in range(3)], dtype=np.float32)
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    bg = top * (1 - t) + bottom * t
    arr = np.broadcast_to(bg, (h, w, 3)).copy()
    arr += nprng.normal(0, 4, size=arr.shape).astype(np.float32)
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")

    shadow = Image.new("L", size, 0)
    sdraw = ImageDraw.Draw(shadow)
    draw = ImageDraw.Draw(im)
    for _ in range(rng.randint(1, 3)):
        cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.3, 0.7) * h
        ow, oh = rng.uniform(0.15, 0.35) * w, rng.uniform(0.2, 0.45) * h
        box = (cx - ow / 2, cy - oh / 2, cx + ow / 2, cy + oh / 2)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        shape = rng.choice(("ellipse", "rect", "poly"))
        sbox = (box[0] + 8, box[3] - oh * 0.1, box[2] + 12, box[3] + oh * 0.08)
        sdraw.ellipse(sbox, fill=110)
        im.paste((20, 20, 20), mask=shadow.filter(ImageFilter.GaussianBlur(6)))
        shadow.paste(0, (0, 0, *size))
        if shape == "ellipse":
            draw.ellipse(box, fill=colour, outline=(0, 0, 0), width=2)
        elif shape == "rect":
            draw.rounded_rectangle(box, radius=int(min(ow, oh) / 6), fill=colour)
        else:
            pts = [
                (cx, box[1]),
                (box[2], cy + oh * 0.1),
                (cx + ow * 0.2, box[3]),
                (cx - ow * 0.2, box[3]),
                (box[0], cy + oh * 0.1),
            ]
            draw.polygon(pts, fill=colour, outline=(0, 0, 0))
        # A highlight, so that objects look lit rather than flat.
        hl = (box[0] + ow * 0.2, box[1] + oh * 0.15, box[0] + ow * 0.4, box[1] + oh * 0.3)
        draw.ellipse(hl, fill=tuple(min(255, c + 70) for c in colour))
    fmt_name = _format_for(out, fmt)
    if fmt_name == "JPEG":
        im.save(out, format="JPEG", quality=92)
    else:
        im.save(out, format=fmt_name)
    return out


def make_near_duplicate(src: PathLike, dst: PathLike, seed: int = 0) -> Path:
    """A near-duplicate of the image at ``src``: cropped 2-4%, resized to ~85%, 5-8% brighter,
    re-encoded (JPEG quality 80 unless ``dst``'s suffix says otherwise)."""
    from PIL import Image, ImageEnhance

    rng = random.Random(f"dup-{seed}")
    out = Path(dst)
    with Image.open(src) as im:
        img = im.convert("RGB")
    w, h = img.size
    dx, dy = int(w * rng.uniform(0.02, 0.04)), int(h * rng.uniform(0.02, 0.04))
    img = img.crop((dx, dy, w - dx, h - dy))
    img = img.resize((max(1, int(img.width * 0.85)), max(1, int(img.height * 0.85))))
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(1.05, 1.08))
    fmt_name = _format_for(out, None)
    if fmt_name == "JPEG":
        img.save(out, format="JPEG", quality=80)
    else:
        img.save(out, format=fmt_name)
    return out


# Displayed colours of the four quadrants of make_exif_rotated_jpeg's image (as seen upright).
EXIF_QUADRANTS = {
    "top_left": (230, 20, 20),
    "top_right": (20, 200, 20),
    "bottom_left": (20, 20, 230),
    "bottom_right": (240, 220, 20),
}


def make_exif_rotated_jpeg(path: PathLike, size: tuple[int, int] = (200, 100)) -> Path:
    """A JPEG whose pixels are stored rotated 90 degrees counter-clockwise, with EXIF
    orientation 6 (rotate 90 clockwise to display). Shown upright it is ``size`` (w, h) with
    the quadrant colours of :data:`EXIF_QUADRANTS`; the stored pixels are ``(h, w)``."""
    from PIL import Image, ImageDraw

    w, h = size
    upright = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(upright)
    draw.rectangle((0, 0, w // 2 - 1, h // 2 - 1), fill=EXIF_QUADRANTS["top_left"])
    draw.rectangle((w // 2, 0, w - 1, h // 2 - 1), fill=EXIF_QUADRANTS["top_right"])
    draw.rectangle((0, h // 2, w // 2 - 1, h - 1), fill=EXIF_QUADRANTS["bottom_left"])
    draw.rectangle((w // 2, h // 2, w - 1, h - 1), fill=EXIF_QUADRANTS["bottom_right"])
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = Path(path)
    stored.save(out, format="JPEG", quality=95, exif=exif.tobytes())
    return out


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def make_bomb_png(path: PathLike, width: int = 100_000, height: int = 100_000) -> Path:
    """A PNG of a few hundred bytes whose header claims ``width x height`` RGB pixels.

    Decoding it would need ``3 * width * height`` bytes; a safe decoder refuses it from the
    header alone. The pixel data is a little zlib stream of zeros that stops early.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096, 9)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )
    out = Path(path)
    out.write_bytes(data)
    return out
