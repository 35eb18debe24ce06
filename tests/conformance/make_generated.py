"""Write the conformance corpus's generated files (``files/generated/``).

Run once by hand (``python -m tests.conformance.make_generated``); the files are committed, so the
test does not depend on this FFmpeg's or this Pillow's encoder output. Each file stands for a case
that public test suites do not ship under a permissive licence: document formats PyMuPDF opens
besides PDF, HTML and Markdown, audio-only containers named like video, cover art, and tags that
are not UTF-8.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "files" / "generated"
XPS_NS = "http://schemas.microsoft.com/xps/2005/06"


def _zip(path: Path, members: list[tuple[str, bytes]], stored_first: bool = False) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for i, (name, data) in enumerate(members):
            method = zipfile.ZIP_STORED if stored_first and i == 0 else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            zf.writestr(info, data)


def xps(path: Path) -> None:
    page = (
        f'<FixedPage xmlns="{XPS_NS}" Width="816" Height="1056" xml:lang="en-US">'
        '<Path Data="M 96,96 L 700,96 700,400 96,400 Z" Fill="#FF3366CC"/>'
        '<Path Data="M 96,500 L 400,500 400,900 96,900 Z" Fill="#FFCC3333"/>'
        "</FixedPage>"
    )
    _zip(
        path,
        [
            (
                "[Content_Types].xml",
                b'<?xml version="1.0" encoding="utf-8"?>'
                b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                b'<Default Extension="rels" '
                b'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                b'<Default Extension="fdseq" '
                b'ContentType="application/vnd.ms-package.xps-fixeddocumentsequence+xml"/>'
                b'<Default Extension="fdoc" '
                b'ContentType="application/vnd.ms-package.xps-fixeddocument+xml"/>'
                b'<Default Extension="fpage" '
                b'ContentType="application/vnd.ms-package.xps-fixedpage+xml"/></Types>',
            ),
            (
                "_rels/.rels",
                b'<?xml version="1.0" encoding="utf-8"?>'
                b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
                b'relationships"><Relationship Id="R0" Type="http://schemas.microsoft.com/xps/'
                b'2005/06/fixedrepresentation" Target="/FixedDocSeq.fdseq"/></Relationships>',
            ),
            (
                "FixedDocSeq.fdseq",
                f'<FixedDocumentSequence xmlns="{XPS_NS}">'
                '<DocumentReference Source="/Documents/1/FixedDoc.fdoc"/>'
                "</FixedDocumentSequence>".encode(),
            ),
            (
                "Documents/1/FixedDoc.fdoc",
                f'<FixedDocument xmlns="{XPS_NS}">'
                '<PageContent Source="/Documents/1/Pages/1.fpage"/></FixedDocument>'.encode(),
            ),
            ("Documents/1/Pages/1.fpage", page.encode()),
        ],
    )


def epub(path: Path) -> None:
    chapter = (
        '<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml">'
        "<head><title>Chapter 1</title></head><body><h1>Chapter 1</h1>"
        + "".join(
            f"<p>Paragraph {i}: the pipeline lays this book out on pages and renders them.</p>"
            for i in range(40)
        )
        + "</body></html>"
    )
    _zip(
        path,
        [
            ("mimetype", b"application/epub+zip"),
            (
                "META-INF/container.xml",
                b'<?xml version="1.0"?><container version="1.0" '
                b'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
                b'<rootfile full-path="OEBPS/content.opf" '
                b'media-type="application/oebps-package+xml"/></rootfiles></container>',
            ),
            (
                "OEBPS/content.opf",
                b'<?xml version="1.0" encoding="utf-8"?><package version="2.0" '
                b'xmlns="http://www.idpf.org/2007/opf" unique-identifier="id">'
                b'<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Sample</dc:title>'
                b'<dc:identifier id="id">sample-1</dc:identifier><dc:language>en</dc:language>'
                b'</metadata><manifest><item id="c1" href="ch1.xhtml" '
                b'media-type="application/xhtml+xml"/></manifest><spine>'
                b'<itemref idref="c1"/></spine></package>',
            ),
            ("OEBPS/ch1.xhtml", chapter.encode()),
        ],
        stored_first=True,
    )


def fb2(path: Path) -> None:
    paragraphs = "".join(f"<p>Paragraph {i} of a FictionBook.</p>" for i in range(30))
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<FictionBook xmlns="http://www.gribuser.ru/xml/fictionbook/2.0">'
        "<description><title-info><book-title>Sample</book-title><lang>en</lang>"
        "</title-info></description>"
        f"<body><section><title><p>Chapter</p></title>{paragraphs}</section></body>"
        "</FictionBook>\n",
        encoding="utf-8",
    )


def cbz(path: Path) -> None:
    from PIL import Image

    pages = []
    for i, colour in enumerate(((200, 40, 40), (40, 160, 60))):
        buf = io.BytesIO()
        Image.new("RGB", (120, 180), colour).save(buf, format="PNG")
        pages.append((f"page{i + 1:02d}.png", buf.getvalue()))
    _zip(path, pages)


def html(path: Path) -> None:
    path.write_text(
        "<!DOCTYPE html>\n<html><head><title>Release notes</title>"
        "<style>body { font-family: sans-serif; }</style>"
        "<script>var hidden = 'never embedded';</script></head>\n<body>\n"
        "<h1>Release notes</h1>\n<p>Images, documents &amp; media are recognised by content."
        "</p>\n<ul><li>First&nbsp;item</li><li>Second item</li></ul>\n"
        "<!-- a comment that is not text -->\n</body></html>\n",
        encoding="utf-8",
    )


def markdown(path: Path) -> None:
    path.write_text(
        "# Notes\n\nMarkdown is embedded by its text.\n\n- one\n- two\n\n```\ncode\n```\n",
        encoding="utf-8",
    )


def _tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 0.3 * 32767).astype(np.int16)


def audio_only(path: Path, fmt: str, codec: str, cover: bool = False) -> None:
    """Audio in a container named like video (and, with ``cover``, a cover-art picture)."""
    import av

    rate = 48000
    samples = _tone(3.0, rate)
    with av.open(str(path), "w", format=fmt) as out:
        stream: Any = out.add_stream(codec, rate=rate, layout="mono")
        pic: Any = None
        if cover:
            pic = out.add_stream("mjpeg", rate=1)
            pic.width = pic.height = 64
            pic.pix_fmt = "yuvj420p"
            pic.disposition = av.stream.Disposition.attached_pic
        frame_size = stream.codec_context.frame_size or 1024
        fmt_name = stream.codec_context.format.name
        for i in range(0, len(samples), frame_size):
            chunk = samples[i : i + frame_size]
            data = chunk.astype(np.float32) / 32768 if fmt_name.startswith("flt") else chunk
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data.reshape(1, -1)), format=fmt_name, layout="mono"
            )
            frame.sample_rate = rate
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if pic is not None:
            image = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 90, np.uint8), "rgb24")
            out.mux(pic.encode(image))
            out.mux(pic.encode(None))


def latin1_tags(path: Path) -> None:
    """A short H.264 MP4 whose title and handler name are Latin-1 bytes, not UTF-8."""
    import av

    with av.open(str(path), "w", format="mp4", metadata_encoding="latin-1") as out:
        out.metadata["title"] = "Café société"
        out.metadata["artist"] = "Björk"
        stream: Any = out.add_stream("libx264", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        stream.metadata["handler_name"] = "Vidéo"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 10, np.uint8), "rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    xps(OUT / "sample.xps")
    epub(OUT / "sample.epub")
    fb2(OUT / "sample.fb2")
    cbz(OUT / "sample.cbz")
    html(OUT / "page.html")
    markdown(OUT / "notes.md")
    audio_only(OUT / "audio_only.webm", "webm", "libopus")
    audio_only(OUT / "audio_only.mp4", "mp4", "aac")
    audio_only(OUT / "song_with_cover.mp4", "mp4", "aac", cover=True)
    latin1_tags(OUT / "latin1_tags.mp4")
    for path in sorted(OUT.iterdir()):
        print(f"{path.stat().st_size:8d} {path.name}")


if __name__ == "__main__":
    main()
